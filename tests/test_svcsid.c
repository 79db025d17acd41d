/*
 * test_svcsid.c — the SID of a virtual service account (collectors/svcsid.c), which the Windows
 * service installer puts in the key file's ACL: checked against SIDs Windows itself publishes.
 */
#include <errno.h>
#include <string.h>

#include "svcsid.h"
#include "testutil.h"

START_TEST(matches_windows)
{
    char sid[SVCSID_TEXT_MAX];
    /* NT SERVICE\TrustedInstaller, as every Windows since Vista shows it (icacls, whoami). */
    ck_assert_int_eq(svcsid_format("TrustedInstaller", sid, sizeof(sid)), 0);
    ck_assert_str_eq(sid, "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464");
    /* Case does not matter: Windows upper-cases the name first. */
    ck_assert_int_eq(svcsid_format("trustedinstaller", sid, sizeof(sid)), 0);
    ck_assert_str_eq(sid, "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464");
    ck_assert_int_eq(svcsid_format("tlsgate-collector", sid, sizeof(sid)), 0);
    ck_assert_str_eq(sid, "S-1-5-80-3164352293-199627847-2579583778-517297591-4160274203");
}
END_TEST

START_TEST(refuses_what_it_cannot_compute)
{
    char sid[SVCSID_TEXT_MAX];
    char longname[258];
    memset(longname, 'a', 257);
    longname[257] = '\0';
    ck_assert_int_eq(svcsid_format("", sid, sizeof(sid)), -EINVAL);
    ck_assert_int_eq(svcsid_format(longname, sid, sizeof(sid)), -EINVAL);
    ck_assert_int_eq(svcsid_format("caf\xc3\xa9", sid, sizeof(sid)), -EINVAL);
    ck_assert_int_eq(svcsid_format("ok", sid, 10), -EINVAL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("svcsid");
    tu_tcase(s, "svcsid", NULL, NULL, TU_TESTS(matches_windows, refuses_what_it_cannot_compute));
    return tu_run_suite(s);
}
