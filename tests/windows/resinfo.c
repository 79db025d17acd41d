/*
 * resinfo.c — reads an exe's resources the way Windows tools do, for t-service.sh: the file
 * version from VERSIONINFO (what Configuration Manager's detection method compares) and the
 * text of Event Log messages from its message table (what Event Viewer shows for an event of
 * the tlsgate-collector source). Built with mingw-w64 by the test and run under Wine.
 *
 *   resinfo EXE version             prints "FILEVERSION a.b.c.d" and "ProductVersion TEXT"
 *   resinfo EXE message ID [ARG..]  prints the message ID (hex) formatted with the arguments
 */
#include <windows.h>

#include <stdio.h>
#include <stdlib.h>
#include <wchar.h>

static int version(const wchar_t *exe)
{
    DWORD handle = 0, size = GetFileVersionInfoSizeW(exe, &handle);
    if (!size) {
        fprintf(stderr, "no VERSIONINFO (error %lu)\n", GetLastError());
        return 1;
    }
    void *data = malloc(size);
    VS_FIXEDFILEINFO *fixed;
    UINT len;
    if (!data || !GetFileVersionInfoW(exe, 0, size, data) ||
        !VerQueryValueW(data, L"\\", (void **)&fixed, &len) || len < sizeof(*fixed)) {
        fprintf(stderr, "unreadable VERSIONINFO\n");
        return 1;
    }
    printf("FILEVERSION %lu.%lu.%lu.%lu\n", (unsigned long)HIWORD(fixed->dwFileVersionMS),
           (unsigned long)LOWORD(fixed->dwFileVersionMS),
           (unsigned long)HIWORD(fixed->dwFileVersionLS),
           (unsigned long)LOWORD(fixed->dwFileVersionLS));
    wchar_t *text;
    if (VerQueryValueW(data, L"\\StringFileInfo\\040904B0\\ProductVersion", (void **)&text, &len))
        printf("ProductVersion %ls\n", text);
    free(data);
    return 0;
}

static int message(const wchar_t *exe, DWORD id, int nargs, wchar_t **args)
{
    HMODULE m = LoadLibraryExW(exe, NULL, LOAD_LIBRARY_AS_DATAFILE);
    if (!m) {
        fprintf(stderr, "cannot load %ls (error %lu)\n", exe, GetLastError());
        return 1;
    }
    DWORD_PTR argv[8] = {0};
    for (int i = 0; i < nargs && i < 8; i++)
        argv[i] = (DWORD_PTR)args[i];
    wchar_t buf[2048];
    DWORD n = FormatMessageW(FORMAT_MESSAGE_FROM_HMODULE | FORMAT_MESSAGE_ARGUMENT_ARRAY, m, id,
                             0x409, buf, 2048, (va_list *)argv);
    if (!n) {
        fprintf(stderr, "no message 0x%08lx (error %lu)\n", (unsigned long)id, GetLastError());
        return 1;
    }
    printf("%ls", buf);
    return 0;
}

int main(void)
{
    int argc;
    wchar_t **argv = CommandLineToArgvW(GetCommandLineW(), &argc);
    if (argc >= 3 && wcscmp(argv[2], L"version") == 0)
        return version(argv[1]);
    if (argc >= 4 && wcscmp(argv[2], L"message") == 0)
        return message(argv[1], (DWORD)wcstoul(argv[3], NULL, 0), argc - 4, argv + 4);
    fprintf(stderr, "usage: resinfo EXE version | resinfo EXE message ID [ARG...]\n");
    return 2;
}
