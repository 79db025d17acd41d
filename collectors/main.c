/*
 * main.c — the tlsgate-collector program: a console process around collector_main
 * (collector.h), which does the work. On Windows, `tlsgate-collector service ...` installs,
 * controls and runs it as a Windows service instead (winsvc.c).
 */
#include <string.h>

#include "collector.h"
#ifdef _WIN32
#include "winservice.h"
#endif

int main(int argc, char **argv)
{
#ifdef _WIN32
    if (argc > 1 && strcmp(argv[1], "service") == 0)
        return winsvc_main(argc - 1, argv + 1);
#endif
    return collector_main(argc, argv);
}
