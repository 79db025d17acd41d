/*
 * test_keyacl.c — who may read the collector's private key file on Windows (collectors/keyacl.c),
 * judged on constructed DACLs: the ACEs Windows gives a file in a user's folder, in
 * %ProgramData%, after `service install`, and the ways a key ends up readable by others.
 * keyacl-win.c, which reads a real file's DACL into this form, runs only on Windows (Wine keeps
 * no file ACLs).
 */
#include <string.h>

#include "keyacl.h"
#include "svcsid.h"
#include "testutil.h"

#define SYSTEM "S-1-5-18"
#define ADMINS "S-1-5-32-544"
#define EVERYONE "S-1-1-0"
#define USERS "S-1-5-32-545"
#define AUTH_USERS "S-1-5-11"
#define FILE_ALL 0x001f01ffu  /* FA */
#define FILE_READ 0x00120089u /* FR */
#define READ_CONTROL 0x00020000u
#define KEY "C:\\ProgramData\\tlsgate\\host.key"

static char service[SVCSID_TEXT_MAX];
static char why[2048];

static int judge(const struct keyacl_ace *aces, size_t n)
{
    return keyacl_judge(KEY, true, aces, n, service, why, sizeof(why));
}

static void setup(void)
{
    ck_assert_int_eq(svcsid_format("tlsgate-collector", service, sizeof(service)), 0);
    why[0] = '\0';
}

START_TEST(the_installers_acl_passes)
{
    /* D:P(A;;FA;;;SY)(A;;FA;;;BA)(A;;FR;;;<service>) — what `service install` sets. */
    struct keyacl_ace aces[] = {
        {true, false, FILE_ALL, SYSTEM, "NT AUTHORITY\\SYSTEM"},
        {true, false, FILE_ALL, ADMINS, "BUILTIN\\Administrators"},
        {true, false, FILE_READ, service, "NT SERVICE\\tlsgate-collector"},
    };
    ck_assert_int_eq(judge(aces, 3), 0);
    ck_assert_str_eq(why, "");
    /* An empty DACL (nobody at all) is private too. */
    ck_assert_int_eq(judge(NULL, 0), 0);
}
END_TEST

START_TEST(programdata_default_inheritance_is_refused)
{
    /* What a file created under %ProgramData% inherits: Users may read and execute. */
    struct keyacl_ace aces[] = {
        {true, false, FILE_ALL, SYSTEM, "NT AUTHORITY\\SYSTEM"},
        {true, false, FILE_ALL, ADMINS, "BUILTIN\\Administrators"},
        {true, false, 0x001200a9u, USERS, "BUILTIN\\Users"},
        {true, false, 0x001301bfu, AUTH_USERS, NULL},
    };
    ck_assert_int_eq(judge(aces, 4), -1);
    ck_assert_msg(strstr(why, KEY ": the private key file can be read by BUILTIN\\Users "
                                  "(S-1-5-32-545), Authenticated Users (S-1-5-11)"),
                  "%s", why);
    ck_assert_msg(strstr(why, "icacls \"" KEY "\" /inheritance:r /grant:r SYSTEM:F "
                              "Administrators:F \"NT SERVICE\\tlsgate-collector\":R"),
                  "%s", why);
}
END_TEST

START_TEST(everyone_and_generic_rights_are_refused)
{
    uint32_t masks[] = {KEYACL_FILE_READ_DATA, KEYACL_GENERIC_READ, KEYACL_GENERIC_ALL,
                        KEYACL_MAXIMUM_ALLOWED,
                        /* may rewrite the ACL or take the file: as good as reading it */
                        KEYACL_WRITE_DAC, KEYACL_WRITE_OWNER, FILE_READ, FILE_ALL};
    for (size_t i = 0; i < sizeof(masks) / sizeof(masks[0]); i++) {
        struct keyacl_ace aces[] = {
            {true, false, FILE_ALL, SYSTEM, NULL},
            {true, false, masks[i], EVERYONE, NULL},
        };
        ck_assert_msg(judge(aces, 2) == -1, "mask 0x%x passed", masks[i]);
        ck_assert_msg(strstr(why, "Everyone (S-1-1-0)"), "%s", why);
    }
    /* A user's own SID (the admin who copied the file) reads it too. */
    struct keyacl_ace user[] = {
        {true, false, FILE_ALL, "S-1-5-21-1004336348-1177238915-682003330-1001", "HOST\\alice"}};
    ck_assert_int_eq(judge(user, 1), -1);
    ck_assert_msg(strstr(why, "HOST\\alice (S-1-5-21-"), "%s", why);
    /* Another service's virtual account is not ours. */
    char other[SVCSID_TEXT_MAX];
    ck_assert_int_eq(svcsid_format("TrustedInstaller", other, sizeof(other)), 0);
    struct keyacl_ace svc[] = {{true, false, FILE_READ, other, NULL}};
    ck_assert_int_eq(judge(svc, 1), -1);
    ck_assert_msg(strstr(why, "an account (S-1-5-80-956008885-"), "%s", why);
}
END_TEST

START_TEST(what_cannot_read_the_data_passes)
{
    struct keyacl_ace aces[] = {
        {true, false, FILE_ALL, SYSTEM, NULL},
        /* Inherit-only: applies to children of a folder, never to this file. */
        {true, true, FILE_ALL, EVERYONE, NULL},
        /* Reading the ACL and attributes is not reading the key. */
        {true, false, READ_CONTROL | 0x80u, USERS, NULL},
        /* A deny ACE grants nothing. */
        {false, false, FILE_ALL, EVERYONE, NULL},
    };
    ck_assert_int_eq(judge(aces, 4), 0);
}
END_TEST

START_TEST(no_dacl_and_no_service_sid)
{
    ck_assert_int_eq(keyacl_judge(KEY, false, NULL, 0, service, why, sizeof(why)), -1);
    ck_assert_msg(strstr(why, "has no DACL: everyone can read it") && strstr(why, "icacls"), "%s",
                  why);
    /* Without a service SID to compare, the service's ACE is just another reader. */
    struct keyacl_ace aces[] = {{true, false, FILE_READ, service, NULL}};
    ck_assert_int_eq(keyacl_judge(KEY, true, aces, 1, NULL, why, sizeof(why)), -1);
    /* A short buffer is cut, never overrun. */
    char small[32];
    memset(small, 'x', sizeof(small));
    struct keyacl_ace all[] = {{true, false, FILE_ALL, EVERYONE, NULL},
                               {true, false, FILE_ALL, USERS, NULL}};
    ck_assert_int_eq(keyacl_judge(KEY, true, all, 2, service, small, 20), -1);
    ck_assert_uint_eq(strlen(small), 19);
    ck_assert_int_eq(small[20], 'x');
}
END_TEST

int main(void)
{
    Suite *s = suite_create("keyacl");
    TCase *tc = tcase_create("keyacl");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, the_installers_acl_passes);
    tcase_add_test(tc, programdata_default_inheritance_is_refused);
    tcase_add_test(tc, everyone_and_generic_rights_are_refused);
    tcase_add_test(tc, what_cannot_read_the_data_passes);
    tcase_add_test(tc, no_dacl_and_no_service_sid);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
