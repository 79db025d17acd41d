/*
 * winfw: the collector's port on Windows — which process holds a TCP port when the collector
 * cannot bind it (GetExtendedTcpTable), and the Windows Firewall inbound rule `service install`
 * adds for the port, limited to the orchestrator addresses of the config's "firewall_allow"
 * (netsh advfirewall, started with CreateProcessW: no shell ever sees the arguments).
 * Windows only.
 */
#ifndef TLSGATE_WINFW_H
#define TLSGATE_WINFW_H

#ifdef _WIN32

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <wchar.h>

/* The rule's name; uninstall removes every rule of that name. */
#define WINFW_RULE_NAME L"tlsgate-collector"

/*
 * Describes who listens on TCP `port` (IPv4 or IPv6): "process 1234 (C:\...\x.exe)", or the
 * System process (PID 4), which is where HTTP.sys reservations show. 0 with `out` filled,
 * -ENOENT when no listener holds it, -ESRCH when one does but no process is reported, -errno
 * when Windows cannot tell.
 */
int winfw_port_owner(uint16_t port, char *out, size_t outsize);

/*
 * Replaces the inbound rule: TCP `port` to `exe` (the service), from the `n` addresses in
 * `allow` only (each already checked by cfg_check_address). Prints each netsh command it runs
 * on `progress` (may be NULL). 0, or -1 with the reason (netsh's own output included) in err.
 */
int winfw_add_rule(const wchar_t *exe, uint16_t port, const char *const *allow, size_t n,
                   FILE *progress, char *err, size_t errsize);

/* Removes the rule (none present is fine). 0, or -1 with the reason in err. */
int winfw_remove_rule(FILE *progress, char *err, size_t errsize);

#endif /* _WIN32 */
#endif
