/*
 * winservice.h — the interface of winsvc.c: `tlsgate-collector service ...`, the collector as a
 * Windows service. (Not named winsvc.h: <windows.h> includes the system's <winsvc.h>, and this
 * folder is on the include path.) Windows only.
 */
#ifndef TLSGATE_WINSERVICE_H
#define TLSGATE_WINSERVICE_H

#ifdef _WIN32

#include <stddef.h>

/* The service's name (also its Event Log source and firewall rule). */
#define WINSVC_NAME "tlsgate-collector"
/* The user-defined control code that makes the running service rebuild its report now
 * (`service refresh`, or `sc control tlsgate-collector 128`). */
#define WINSVC_CONTROL_REFRESH 128
/* The default config file, below %ProgramData%. */
#define WINSVC_CONFIG_NAME "collector.json"

/* `tlsgate-collector service COMMAND [--config FILE]`: argv[0] is "service". Exit code:
 * 0 done (status: running), 1 status: not running, 2 usage, 3 bad config, 4 system error. */
int winsvc_main(int argc, char **argv);

/* %ProgramData%\tlsgate\collector.json into out. 0 or -errno. */
int winsvc_default_config(char *out, size_t size);

#endif /* _WIN32 */
#endif
