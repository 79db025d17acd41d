/*
 * certimport.exe PFX PASSWORD: imports a PKCS#12 file into LocalMachine\My, its key as a machine
 * key that is not exportable (what AD CS autoenrollment leaves on a host). A test helper for
 * t-certstore.sh; Windows has certutil -importpfx for the same, Wine has no certutil.
 * Prints one line per certificate added; exit 0, 1 on any failure (with the Win32 error).
 */
#include <windows.h>
/* */
#include <stdio.h>
#include <stdlib.h>
#include <wincrypt.h>

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: certimport PFX PASSWORD\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", argv[1]);
        return 1;
    }
    static BYTE buf[65536];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    WCHAR pass[128];
    MultiByteToWideChar(CP_UTF8, 0, argv[2], -1, pass, 128);
    CRYPT_DATA_BLOB blob = {(DWORD)n, buf};
    /* No CRYPT_EXPORTABLE: the key cannot be exported again. */
    HCERTSTORE pfx = PFXImportCertStore(&blob, pass, CRYPT_MACHINE_KEYSET);
    if (!pfx) {
        fprintf(stderr, "PFXImportCertStore: error %lu\n", GetLastError());
        return 1;
    }
    HCERTSTORE my =
        CertOpenStore(CERT_STORE_PROV_SYSTEM_W, 0, 0, CERT_SYSTEM_STORE_LOCAL_MACHINE, L"MY");
    if (!my) {
        fprintf(stderr, "CertOpenStore LocalMachine\\My: error %lu\n", GetLastError());
        return 1;
    }
    PCCERT_CONTEXT c = NULL;
    int added = 0;
    while ((c = CertEnumCertificatesInStore(pfx, c)) != NULL) {
        if (!CertAddCertificateContextToStore(my, c, CERT_STORE_ADD_REPLACE_EXISTING, NULL)) {
            fprintf(stderr, "CertAddCertificateContextToStore: error %lu\n", GetLastError());
            return 1;
        }
        DWORD size = 0;
        BOOL key = CertGetCertificateContextProperty(c, CERT_KEY_PROV_INFO_PROP_ID, NULL, &size);
        printf("added a certificate%s\n", key ? " with its key" : " (no key)");
        added++;
    }
    CertCloseStore(my, 0);
    CertCloseStore(pfx, 0);
    return added ? 0 : 1;
}
