/*
 * Unit tests for localserver/imap_parse: the command reader, the parser and
 * its canonical writer, and the response-side string helpers.
 *
 * Parsing is table-driven: each command form is parsed and written back in
 * canonical form, which is compared with the expected dump and must itself
 * parse back to the same dump.  Every refused form is checked for its
 * error text and for the tag a BAD answer would carry.  Reader transcripts
 * give the sequence of events (continuations, commands, errors) for a byte
 * stream, fed whole and byte by byte with identical results.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "imap_parse.h"
#include "testutil.h"

/* ------------------------------------------------------------------ */
/* Helpers */

static char *dump_of(const char *in, size_t len, const struct imap_parse_opts *o, struct err *e)
{
    struct imap_command *c;
    struct buf b = BUF_INIT;

    if (imap_parse(in, len, o, &c, e) < 0) {
        assert_null(c);
        return NULL;
    }
    assert_non_null(c);
    assert_int_equal(imap_command_write(c, &b), 0);
    imap_command_free(c);
    return buf_steal(&b, NULL);
}

static void check_parse(const char *in, const char *want)
{
    struct err e;
    char *d = dump_of(in, strlen(in), NULL, &e);
    char *again;

    if (!d)
        fail_msg("parse failed: %s\n  input: %s", e.text, in);
    if (strcmp(d, want) != 0)
        fail_msg("dump differs\n  input: %s\n  got:   %s\n  want:  %s", in, d, want);
    again = dump_of(d, strlen(d), NULL, &e);
    if (!again)
        fail_msg("dump does not parse: %s\n  dump: %s", e.text, d);
    assert_string_equal(again, d);
    free(again);
    free(d);
}

/* ------------------------------------------------------------------ */
/* Command forms: input -> canonical dump */

static const struct {
    const char *in;
    const char *want;
} forms[] = {
    /* no arguments; case-insensitive names */
    {"a1 CAPABILITY", "a1 CAPABILITY"},
    {"a1 noop", "a1 NOOP"},
    {"t LOGOUT", "t LOGOUT"},
    {"t StartTLS", "t STARTTLS"},
    {"t NAMESPACE", "t NAMESPACE"},
    {"t CHECK", "t CHECK"},
    {"t CLOSE", "t CLOSE"},
    {"t UNSELECT", "t UNSELECT"},
    {"t EXPUNGE", "t EXPUNGE"},
    {"t IDLE", "t IDLE"},
    {"A.1_x! NOOP", "A.1_x! NOOP"},
    /* LOGIN: atoms, quoted strings, literals */
    {"a LOGIN alice secret", "a LOGIN alice secret"},
    {"a LOGIN \"alice\" \"s p\\\"a\\\\c\"", "a LOGIN alice \"s p\\\"a\\\\c\""},
    {"a LOGIN {5}\r\nalice {3+}\r\nx y", "a LOGIN alice \"x y\""},
    {"a LOGIN \"\" \"\"", "a LOGIN \"\" \"\""},
    {"a LOGIN nil NIL", "a LOGIN \"nil\" \"NIL\""},
    {"a LOGIN {3}\r\na\nb pw", "a LOGIN {3}\r\na\nb pw"},
    {"a LOGIN \"j\xc3\xb6rg\" pw", "a LOGIN \"j\xc3\xb6rg\" pw"},
    {"a LOGIN a]b pw", "a LOGIN a]b pw"},
    /* AUTHENTICATE with and without initial response */
    {"a AUTHENTICATE PLAIN", "a AUTHENTICATE PLAIN"},
    {"a authenticate PLAIN AGFsaWNlAHNlY3JldA==", "a AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA=="},
    {"a AUTHENTICATE PLAIN =", "a AUTHENTICATE PLAIN ="},
    /* ENABLE, ID */
    {"e ENABLE CONDSTORE QRESYNC UTF8=ACCEPT", "e ENABLE CONDSTORE QRESYNC UTF8=ACCEPT"},
    {"i ID NIL", "i ID NIL"},
    {"i ID ()", "i ID ()"},
    {"i ID (\"name\" \"mutt\" \"version\" NIL)", "i ID (\"name\" \"mutt\" \"version\" NIL)"},
    {"i ID ({4}\r\nname \"x\")", "i ID (\"name\" \"x\")"},
    /* SELECT / EXAMINE with CONDSTORE and QRESYNC */
    {"s SELECT inbox", "s SELECT INBOX"},
    {"s SELECT INBOX.Sent", "s SELECT INBOX.Sent"},
    {"s EXAMINE \"Entw&APw-rfe\"", "s EXAMINE Entw&APw-rfe"},
    {"s SELECT INBOX (CONDSTORE)", "s SELECT INBOX (CONDSTORE)"},
    {"s SELECT INBOX (QRESYNC (67890007 20050715194045000))",
     "s SELECT INBOX (QRESYNC (67890007 20050715194045000))"},
    {"s SELECT INBOX (QRESYNC (67890007 90060115194045000 41:211,214:541))",
     "s SELECT INBOX (QRESYNC (67890007 90060115194045000 41:211,214:541))"},
    {"s SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 (5000,7500,9000,9990:9999 "
     "15000,22500,27000,29970,29973,29976:29979)))",
     "s SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 (5000,7500,9000,9990:9999 "
     "15000,22500,27000,29970,29973,29976:29979)))"},
    {"s SELECT INBOX (QRESYNC (1 2 (1 3)))", "s SELECT INBOX (QRESYNC (1 2 (1 3)))"},
    {"s SELECT INBOX (CONDSTORE QRESYNC (1 2))", "s SELECT INBOX (CONDSTORE QRESYNC (1 2))"},
    /* mailbox management */
    {"c CREATE foo/bar", "c CREATE foo/bar"},
    {"c CREATE \"a b\"", "c CREATE \"a b\""},
    {"c CREATE Drafts (USE (\\Drafts))", "c CREATE Drafts (USE (\\Drafts))"},
    {"d DELETE Inbox", "d DELETE INBOX"},
    {"r RENAME old \"new name\"", "r RENAME old \"new name\""},
    {"r RENAME INBOX.a inBox", "r RENAME INBOX.a INBOX"},
    {"s SUBSCRIBE a", "s SUBSCRIBE a"},
    {"s UNSUBSCRIBE {1}\r\n*", "s UNSUBSCRIBE \"*\""},
    /* LIST, LSUB */
    {"l LIST \"\" *", "l LIST \"\" *"},
    {"l LIST \"\" %", "l LIST \"\" %"},
    {"l LIST ~/Mail/ %/f*]", "l LIST ~/Mail/ %/f*]"},
    {"l LIST \"\" \"a b*\"", "l LIST \"\" \"a b*\""},
    {"l LIST (SUBSCRIBED) \"\" \"*\"", "l LIST (SUBSCRIBED) \"\" *"},
    {"l LIST (REMOTE SUBSCRIBED RECURSIVEMATCH) \"\" %",
     "l LIST (SUBSCRIBED REMOTE RECURSIVEMATCH) \"\" %"},
    {"l LIST () \"\" %", "l LIST () \"\" %"},
    {"l LIST \"\" (INBOX Sent% \"x y\")", "l LIST \"\" (INBOX Sent% \"x y\")"},
    {"l LIST \"\" (%)", "l LIST () \"\" %"},
    {"l LIST \"\" % RETURN (CHILDREN SUBSCRIBED)", "l LIST \"\" % RETURN (SUBSCRIBED CHILDREN)"},
    {"l LIST \"\" % RETURN ()", "l LIST \"\" % RETURN ()"},
    {"l LIST (SPECIAL-USE) \"\" * RETURN (SPECIAL-USE STATUS (MESSAGES UNSEEN SIZE))",
     "l LIST (SPECIAL-USE) \"\" * RETURN (SPECIAL-USE STATUS (MESSAGES UNSEEN SIZE))"},
    {"l LSUB \"\" *", "l LSUB \"\" *"},
    {"l LSUB #news. comp.mail.*", "l LSUB #news. comp.mail.*"},
    /* STATUS */
    {"s STATUS INBOX (MESSAGES)", "s STATUS INBOX (MESSAGES)"},
    {"s STATUS blurdybloop (UIDNEXT MESSAGES)", "s STATUS blurdybloop (MESSAGES UIDNEXT)"},
    {"s STATUS x (highestmodseq size deleted appendlimit unseen uidvalidity recent)",
     "s STATUS x (RECENT UIDVALIDITY UNSEEN DELETED SIZE HIGHESTMODSEQ APPENDLIMIT)"},
    /* APPEND: flags, date, literal, literal8, several messages */
    {"a APPEND INBOX {5}\r\nhello", "a APPEND INBOX {5}\r\nhello"},
    {"a APPEND saved-messages (\\Seen) {3+}\r\nabc",
     "a APPEND saved-messages (\\Seen) {3}\r\nabc"},
    {"a APPEND x () \" 7-Feb-1994 21:52:25 -0800\" {1}\r\nz",
     "a APPEND x () \"07-Feb-1994 21:52:25 -0800\" {1}\r\nz"},
    {"a APPEND x \"29-Feb-2024 00:00:60 +1345\" ~{3}\r\na\x01" "b",
     "a APPEND x \"29-Feb-2024 00:00:60 +1345\" ~{3}\r\na\x01" "b"},
    {"a APPEND x (\\Seen $Forwarded) {1}\r\na (\\Draft) {2}\r\nbc {0}\r\n",
     "a APPEND x (\\Seen $Forwarded) {1}\r\na (\\Draft) {2}\r\nbc {0}\r\n"},
    /* SEARCH: every key */
    {"s SEARCH ALL", "s SEARCH ALL"},
    {"s SEARCH answered deleted draft flagged new old recent seen unanswered undeleted undraft "
     "unflagged unseen",
     "s SEARCH ANSWERED DELETED DRAFT FLAGGED NEW OLD RECENT SEEN UNANSWERED UNDELETED UNDRAFT "
     "UNFLAGGED UNSEEN"},
    {"s SEARCH BCC a CC b FROM \"Smith\" TO d SUBJECT {3}\r\nx y BODY e TEXT \"\"",
     "s SEARCH BCC a CC b FROM Smith TO d SUBJECT \"x y\" BODY e TEXT \"\""},
    {"s SEARCH HEADER Message-ID <x@y> HEADER \"List-Id\" \"\"",
     "s SEARCH HEADER Message-ID <x@y> HEADER List-Id \"\""},
    {"s SEARCH KEYWORD $Junk UNKEYWORD NonJunk", "s SEARCH KEYWORD $Junk UNKEYWORD NonJunk"},
    {"s SEARCH BEFORE 1-Feb-1994 ON \"02-mar-2000\" SINCE 31-Dec-1999",
     "s SEARCH BEFORE 1-Feb-1994 ON 2-Mar-2000 SINCE 31-Dec-1999"},
    {"s SEARCH SENTBEFORE 1-Jan-2000 SENTON 29-Feb-2000 SENTSINCE 1-Jan-1970",
     "s SEARCH SENTBEFORE 1-Jan-2000 SENTON 29-Feb-2000 SENTSINCE 1-Jan-1970"},
    {"s SEARCH LARGER 1024 SMALLER 0", "s SEARCH LARGER 1024 SMALLER 0"},
    {"s SEARCH LARGER 18446744", "s SEARCH LARGER 18446744"},
    {"s SEARCH UID 1:*,5 2,4:3", "s SEARCH UID 1:*,5 2,3:4"},
    {"s SEARCH *:4", "s SEARCH 4:*"},
    {"s SEARCH $", "s SEARCH $"},
    {"s SEARCH UID $", "s SEARCH UID $"},
    {"s SEARCH 1,$", "s SEARCH 1,$"},
    {"s SEARCH NOT SEEN", "s SEARCH NOT SEEN"},
    {"s SEARCH OR SEEN FLAGGED", "s SEARCH OR SEEN FLAGGED"},
    {"s SEARCH OR (SEEN FROM x) NOT (TO y OR 1 2)", "s SEARCH OR (SEEN FROM x) NOT (TO y OR 1 2)"},
    {"s SEARCH NOT NOT OR OR 1 2 3 4", "s SEARCH NOT NOT OR OR 1 2 3 4"},
    {"s SEARCH (((SEEN)))", "s SEARCH (((SEEN)))"},
    {"s SEARCH CHARSET UTF-8 TEXT {4}\r\n\xc3\xa9t\xc3",
     "s SEARCH CHARSET UTF-8 TEXT {4}\r\n\xc3\xa9t\xc3"},
    {"s SEARCH CHARSET \"us-ascii\" SUBJECT \"caf\xc3\xa9\"",
     "s SEARCH CHARSET us-ascii SUBJECT \"caf\xc3\xa9\""},
    {"s SEARCH MODSEQ 620162338", "s SEARCH MODSEQ 620162338"},
    {"s SEARCH MODSEQ \"/flags/\\\\draft\" all 620162338",
     "s SEARCH MODSEQ \"/flags/\\\\draft\" all 620162338"},
    {"s SEARCH MODSEQ \"/flags/$Junk\" PRIV 0", "s SEARCH MODSEQ \"/flags/$Junk\" priv 0"},
    {"s SEARCH OLDER 3600 YOUNGER 1", "s SEARCH OLDER 3600 YOUNGER 1"},
    {"s SEARCH RETURN (MIN MAX) UNSEEN", "s SEARCH RETURN (MIN MAX) UNSEEN"},
    {"s SEARCH RETURN () ALL", "s SEARCH RETURN () ALL"},
    {"s SEARCH RETURN (SAVE COUNT ALL) CHARSET UTF-8 ALL",
     "s SEARCH RETURN (ALL COUNT SAVE) CHARSET UTF-8 ALL"},
    {"s UID SEARCH 1:100 UID 443:557", "s UID SEARCH 1:100 UID 443:557"},
    /* FETCH: every attribute */
    {"f FETCH 1 ALL", "f FETCH 1 (FLAGS INTERNALDATE RFC822.SIZE ENVELOPE)"},
    {"f FETCH 1 fast", "f FETCH 1 (FLAGS INTERNALDATE RFC822.SIZE)"},
    {"f FETCH 1 FULL", "f FETCH 1 (FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODY)"},
    {"f FETCH 2:4 (ENVELOPE FLAGS INTERNALDATE RFC822 RFC822.HEADER RFC822.SIZE RFC822.TEXT "
     "BODY BODYSTRUCTURE UID MODSEQ)",
     "f FETCH 2:4 (ENVELOPE FLAGS INTERNALDATE RFC822 RFC822.HEADER RFC822.SIZE RFC822.TEXT "
     "BODY BODYSTRUCTURE UID MODSEQ)"},
    {"f FETCH * flags", "f FETCH * (FLAGS)"},
    {"f FETCH 1 BODY[]", "f FETCH 1 (BODY[])"},
    {"f FETCH 1 (BODY.PEEK[HEADER] BODY[TEXT] BODY[1] BODY[1.2.3] BODY[4.MIME])",
     "f FETCH 1 (BODY.PEEK[HEADER] BODY[TEXT] BODY[1] BODY[1.2.3] BODY[4.MIME])"},
    {"f FETCH 1 (BODY[1.2.HEADER] BODY[3.TEXT]<0.100>)",
     "f FETCH 1 (BODY[1.2.HEADER] BODY[3.TEXT]<0.100>)"},
    {"f FETCH 1 BODY.PEEK[HEADER.FIELDS (From To \"Subject\" {2}\r\nCc)]",
     "f FETCH 1 (BODY.PEEK[HEADER.FIELDS (From To Subject Cc)])"},
    {"f FETCH 1 body[header.fields.not (X-Spam)]<5.10>",
     "f FETCH 1 (BODY[HEADER.FIELDS.NOT (X-Spam)]<5.10>)"},
    {"f FETCH 1 (BODY[2.HEADER.FIELDS (A)])", "f FETCH 1 (BODY[2.HEADER.FIELDS (A)])"},
    {"f FETCH 1 (BINARY[] BINARY.PEEK[1.2]<0.4096> BINARY.SIZE[3] BINARY.SIZE[])",
     "f FETCH 1 (BINARY[] BINARY.PEEK[1.2]<0.4096> BINARY.SIZE[3] BINARY.SIZE[])"},
    {"f FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)", "f FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)"},
    {"f UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)",
     "f UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)"},
    {"f UID FETCH 1:* UID", "f UID FETCH 1:* (UID)"},
    {"f FETCH $ FLAGS", "f FETCH $ (FLAGS)"},
    {"f FETCH 4294967294 FLAGS", "f FETCH 4294967294 (FLAGS)"},
    {"f UID FETCH 4294967295:1 FLAGS", "f UID FETCH 1:4294967295 (FLAGS)"},
    {"f UID FETCH *:4294967295 FLAGS", "f UID FETCH 4294967295:* (FLAGS)"},
    /* STORE */
    {"s STORE 2:4 +FLAGS (\\Deleted)", "s STORE 2:4 +FLAGS (\\Deleted)"},
    {"s STORE 1 -FLAGS.SILENT \\Seen $Junk", "s STORE 1 -FLAGS.SILENT (\\Seen $Junk)"},
    {"s STORE 1 flags ()", "s STORE 1 FLAGS ()"},
    {"s UID STORE 1:* (UNCHANGEDSINCE 0) +FLAGS.SILENT (\\Answered)",
     "s UID STORE 1:* (UNCHANGEDSINCE 0) +FLAGS.SILENT (\\Answered)"},
    /* COPY, MOVE, UID EXPUNGE */
    {"c COPY 2:4 MEETING", "c COPY 2:4 MEETING"},
    {"c UID COPY 1,3:5 \"a b\"", "c UID COPY 1,3:5 \"a b\""},
    {"m MOVE 1 inbox", "m MOVE 1 INBOX"},
    {"m uid move 7:3 Trash", "m UID MOVE 3:7 Trash"},
    {"x UID EXPUNGE 3000:3002", "x UID EXPUNGE 3000:3002"},
    /* SORT, THREAD */
    {"s SORT (SUBJECT) UTF-8 SINCE 1-Feb-1994", "s SORT (SUBJECT) UTF-8 SINCE 1-Feb-1994"},
    {"s UID SORT (REVERSE DATE arrival DISPLAYFROM) US-ASCII ALL",
     "s UID SORT (REVERSE DATE ARRIVAL DISPLAYFROM) US-ASCII ALL"},
    {"s SORT RETURN (MIN COUNT) (SIZE) UTF-8 UNDELETED",
     "s SORT RETURN (MIN COUNT) (SIZE) UTF-8 UNDELETED"},
    {"t THREAD REFERENCES UTF-8 SINCE 5-MAR-2000", "t THREAD REFERENCES UTF-8 SINCE 5-Mar-2000"},
    {"t UID THREAD ORDEREDSUBJECT \"UTF-8\" (OR 1 2)",
     "t UID THREAD ORDEREDSUBJECT UTF-8 (OR 1 2)"},
};

static void test_forms(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(forms); i++)
        check_parse(forms[i].in, forms[i].want);
}

/* ------------------------------------------------------------------ */
/* Refused forms: input -> part of the error text; tag for the answer */

static const struct {
    const char *in;
    const char *err;
    const char *tag;                 /* NULL: none recoverable */
} bad[] = {
    {"", "Empty command", NULL},
    {"+tag NOOP", "Bad tag", NULL},
    {"(x NOOP", "Bad tag", NULL},
    {"a", "Missing space", "a"},
    {"a  NOOP", "Unknown command", "a"},
    {"a FOO", "Unknown command", "a"},
    {"a NOOP ", "Unexpected characters", "a"},
    {"a NOOP x", "Unexpected characters", "a"},
    {"a CAPABILITY\r\n", "Unexpected characters", "a"},
    {"a UID NOOP", "Unknown UID command", "a"},
    {"a UID", "Missing space", "a"},
    /* strings */
    {"a LOGIN \"al\0ce\" x", "NUL in quoted string", "a"},
    {"a LOGIN \"alice x", "Unterminated quoted string", "a"},
    {"a LOGIN \"a\\lice\" x", "Bad escape", "a"},
    {"a LOGIN \"\xc3\" x", "Invalid UTF-8", "a"},
    {"a LOGIN \"\xed\xa0\x80\" x", "Invalid UTF-8", "a"},
    {"a LOGIN {5}\r\nabc", "Literal longer than the command", "a"},
    {"a LOGIN {3}\r\na\0c x", "NUL in literal", "a"},
    {"a LOGIN {3x}\r\nabc x", "\"}\"", "a"},
    {"a LOGIN {3}x\r\nabc x", "CRLF after literal size", "a"},
    {"a LOGIN {3}abc x", "CRLF after literal size", "a"},
    {"a LOGIN ~{3}\r\nabc x", "Expected space", "a"},
    {"a LOGIN alice", "Missing space", "a"},
    {"a LOGIN alice  x", "Expected password", "a"},
    {"a LOGIN (x) y", "Expected user name", "a"},
    {"a AUTHENTICATE", "Missing space", "a"},
    {"a AUTHENTICATE PLAIN abc", "Bad base64", "a"},
    {"a AUTHENTICATE PLAIN ab=c", "Bad base64", "a"},
    {"a AUTHENTICATE PLAIN a===", "Bad base64", "a"},
    {"a ENABLE", "Missing space", "a"},
    {"a ID", "Missing space", "a"},
    {"a ID (\"a\")", "Expected space", "a"},
    {"a ID (\"0123456789012345678901234567890\" NIL)", "too long", "a"},
    {"a ID (a b)", "Expected string", "a"},
    /* mailboxes */
    {"a SELECT", "Missing space", "a"},
    {"a SELECT INBOX ()", "Unknown SELECT parameter", "a"},
    {"a SELECT INBOX (FOO)", "Unknown SELECT parameter", "a"},
    {"a SELECT INBOX (QRESYNC (0 1))", "UIDVALIDITY must not be zero", "a"},
    {"a SELECT INBOX (QRESYNC (1 0))", "mod-sequence must not be zero", "a"},
    {"a SELECT INBOX (QRESYNC (1 9223372036854775808))", "mod-sequence too large", "a"},
    {"a SELECT INBOX (QRESYNC (1 2) QRESYNC (1 2))", "QRESYNC given twice", "a"},
    {"a SELECT INBOX (QRESYNC (1 2 x))", "Bad QRESYNC", "a"},
    {"a CREATE x (FOO (\\Drafts))", "Unknown CREATE parameter", "a"},
    {"a RENAME x", "Missing space", "a"},
    {"a DELETE a b", "Unexpected characters", "a"},
    {"a LIST \"\"", "Missing space", "a"},
    {"a LIST (FOO) \"\" *", "Unknown LIST selection option", "a"},
    {"a LIST (RECURSIVEMATCH) \"\" *", "RECURSIVEMATCH needs another", "a"},
    {"a LIST \"\" * RETURN (FOO)", "Unknown LIST return option", "a"},
    {"a LIST \"\" * RETURN (CHILDREN CHILDREN)", "given twice", "a"},
    {"a LIST \"\" * FOO (CHILDREN)", "Expected RETURN", "a"},
    {"a LIST \"\" * RETURN (STATUS ())", "Unknown status item", "a"},
    {"a LSUB (SUBSCRIBED) \"\" *", "Expected reference", "a"},
    {"a LIST \"\" (a )", "Expected mailbox pattern", "a"},
    {"a LIST \"\" ", "Expected mailbox pattern", "a"},
    {"a STATUS INBOX ()", "Unknown status item", "a"},
    {"a STATUS INBOX (MESSAGES FOO)", "Unknown status item", "a"},
    {"a STATUS INBOX MESSAGES", "Expected \"(\"", "a"},
    /* APPEND */
    {"a APPEND INBOX", "Missing space", "a"},
    {"a APPEND INBOX \"hello\"", "Bad day", "a"},
    {"a APPEND INBOX hello", "APPEND needs the message as a literal", "a"},
    {"a APPEND INBOX (\\Seen) \"x\" {1}\r\na", "Bad day", "a"},
    {"a APPEND INBOX \"30-Feb-2024 00:00:00 +0000\" {1}\r\na", "No such day", "a"},
    {"a APPEND INBOX \"01-Foo-2024 00:00:00 +0000\" {1}\r\na", "Bad month", "a"},
    {"a APPEND INBOX \"01-Jan-2024 24:00:00 +0000\" {1}\r\na", "Bad time", "a"},
    {"a APPEND INBOX \"01-Jan-2024 00:00:00 0000\" {1}\r\na", "Bad zone", "a"},
    {"a APPEND INBOX \"1-Jan-2024 00:00:00 +0000\" {1}\r\na", "Bad day", "a"},
    {"a APPEND INBOX (\\) {1}\r\na", "Expected flag", "a"},
    {"a APPEND INBOX {1}\r\na ", "APPEND needs the message as a literal", "a"},
    {"a APPEND INBOX UTF8 (~{1}\r\na)", "UTF8 APPEND needs ENABLE", "a"},
    /* SEARCH */
    {"a SEARCH", "Missing space", "a"},
    {"a SEARCH FOO", "Unknown search key", "a"},
    {"a SEARCH SEEN  FLAGGED", "Unknown search key", "a"},
    {"a SEARCH ()", "Unknown search key", "a"},
    {"a SEARCH (SEEN", "Missing \")\"", "a"},
    {"a SEARCH OR SEEN", "Missing space", "a"},
    {"a SEARCH NOT", "Missing space", "a"},
    {"a SEARCH BEFORE 32-Jan-2000", "No such day", "a"},
    {"a SEARCH BEFORE 29-Feb-1900", "No such day", "a"},
    {"a SEARCH BEFORE 1-Jan-99", "Bad year", "a"},
    {"a SEARCH BEFORE 1-Ja", "Bad month", "a"},
    {"a SEARCH ON \"1-Jan-2000", "closing quote", "a"},
    {"a SEARCH LARGER x", "Expected size", "a"},
    {"a SEARCH LARGER 9223372036854775808", "size too large", "a"},
    {"a SEARCH UID", "Missing space", "a"},
    {"a SEARCH 0", "sequence number must not be zero", "a"},
    {"a SEARCH 1:0", "sequence number must not be zero", "a"},
    {"a SEARCH 4294967296", "sequence number too large", "a"},
    {"a SEARCH 1,", "Expected sequence number", "a"},
    {"a SEARCH 1:", "Expected sequence number", "a"},
    {"a SEARCH $:4", "Expected space", "a"},
    {"a SEARCH CHARSET", "Missing space", "a"},
    {"a SEARCH CHARSET UTF-8", "Missing space", "a"},
    {"a SEARCH RETURN (FOO) ALL", "Unknown RETURN option", "a"},
    {"a SEARCH MODSEQ \"/x/\" all 5", "Bad MODSEQ entry name", "a"},
    {"a SEARCH MODSEQ \"/flags/\\\\seen\" none 5", "Bad MODSEQ entry type", "a"},
    {"a SEARCH OLDER 0", "interval must not be zero", "a"},
    {"a SEARCH KEYWORD \\", "Expected keyword", "a"},
    {"a SEARCH KEYWORD \\Seen", "Expected keyword", "a"},
    {"a SEARCH HEADER From", "Missing space", "a"},
    {"a SORT SUBJECT UTF-8 ALL", "Expected sort criteria", "a"},
    {"a SORT () UTF-8 ALL", "Unknown sort key", "a"},
    {"a SORT (REVERSE) UTF-8 ALL", "Expected space", "a"},
    {"a SORT (DATE) UTF-8", "Missing space", "a"},
    {"a THREAD REFERENCES UTF-8", "Missing space", "a"},
    {"a THREAD (x) UTF-8 ALL", "Expected thread algorithm", "a"},
    /* FETCH */
    {"a FETCH 1", "Missing space", "a"},
    {"a FETCH 1 FOO", "Unknown FETCH item", "a"},
    {"a FETCH 1 ()", "Unknown FETCH item", "a"},
    {"a FETCH 1 (FLAGS", "Missing \")\"", "a"},
    {"a FETCH 1 BODY[", "Bad section", "a"},
    {"a FETCH 1 BODY[FOO]", "Bad section", "a"},
    {"a FETCH 1 BODY[MIME]", "Bad section", "a"},
    {"a FETCH 1 BODY[0]", "section part must not be zero", "a"},
    {"a FETCH 1 BODY[1.]", "Bad section", "a"},
    {"a FETCH 1 BODY[1..2]", "Bad section", "a"},
    {"a FETCH 1 BODY[HEADER.FIELDS ()]", "Expected header field name", "a"},
    {"a FETCH 1 BODY[HEADER.FIELDS]", "Expected space", "a"},
    {"a FETCH 1 BODY.PEEK", "Missing \"[\"", "a"},
    {"a FETCH 1 BODY[]<0>", "\".\" in partial", "a"},
    {"a FETCH 1 BODY[]<0.0>", "partial length must not be zero", "a"},
    {"a FETCH 1 BINARY[TEXT]", "Bad BINARY section", "a"},
    {"a FETCH 1 BINARY[1.MIME]", "Bad BINARY section", "a"},
    {"a FETCH 1 BINARY.SIZE[1]<0.1>", "Unexpected characters", "a"},
    {"a FETCH 1 (FLAGS) (FOO)", "Unknown FETCH modifier", "a"},
    {"a FETCH 1 (FLAGS) (CHANGEDSINCE 0)", "must not be zero", "a"},
    {"a FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)", "VANISHED needs UID FETCH", "a"},
    {"a UID FETCH 1 (FLAGS) (VANISHED)", "VANISHED needs UID FETCH", "a"},
    {"a FETCH x FLAGS", "Expected sequence number", "a"},
    {"a FETCH 1 ALL FLAGS", "Expected \"(\"", "a"},
    /* STORE, COPY, MOVE, EXPUNGE */
    {"a STORE 1 FLAGS", "Missing space", "a"},
    {"a STORE 1 +FLAG (\\Seen)", "Expected FLAGS", "a"},
    {"a STORE 1 FLAGS (\\Seen", "Missing \")\"", "a"},
    {"a STORE 1 (UNCHANGEDSINCE) FLAGS ()", "Expected space", "a"},
    {"a STORE 1 (FOO 1) FLAGS ()", "Unknown STORE modifier", "a"},
    {"a COPY 1", "Missing space", "a"},
    {"a MOVE 1:2", "Missing space", "a"},
    {"a UID EXPUNGE", "Missing space", "a"},
    {"a EXPUNGE 1", "Unexpected characters", "a"},
    {"a IDLE now", "Unexpected characters", "a"},
};

static void test_bad(void **state)
{
    size_t wrong = 0;

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        struct imap_command *c = (struct imap_command *)1;
        struct err e;
        struct buf tag = BUF_INIT;
        size_t len = strlen(bad[i].in);
        const char *nul = NULL;
        /* inputs with a NUL: the table writes it as \0 inside the string */
        if (strstr(bad[i].err, "NUL")) {
            nul = bad[i].in + len + 1;
            len += 1 + strlen(nul);
        }
        err_clear(&e);
        if (imap_parse(bad[i].in, len, NULL, &c, &e) == 0) {
            struct buf d = BUF_INIT;
            assert_int_equal(imap_command_write(c, &d), 0);
            fail_msg("accepted: %s\n  dump: %s", bad[i].in, buf_cstr(&d));
        }
        assert_null(c);
        assert_int_equal(e.code, ERR_PARSE);
        if (!strstr(e.text, bad[i].err)) {
            print_error("input %s\n  error: %s\n  want:  %s\n", bad[i].in, e.text, bad[i].err);
            wrong++;
        }
        if (bad[i].tag) {
            assert_int_equal(imap_parse_tag(bad[i].in, len, &tag), 0);
            assert_string_equal(buf_cstr(&tag), bad[i].tag);
        } else {
            assert_int_equal(imap_parse_tag(bad[i].in, len, &tag), -1);
        }
        buf_free(&tag);
    }
    assert_int_equal(wrong, 0);
}

/* ------------------------------------------------------------------ */
/* The structure behind some dumps */

static struct imap_command *parse_ok(const char *in, size_t len, const struct imap_parse_opts *o)
{
    struct imap_command *c;
    struct err e;

    if (imap_parse(in, len, o, &c, &e) < 0)
        fail_msg("parse failed: %s: %s", in, e.text);
    return c;
}

static struct imap_command *parse_str(const char *in)
{
    return parse_ok(in, strlen(in), NULL);
}

static void test_structure(void **state)
{
    struct imap_command *c;
    const struct imap_search_key *k;
    static const char app[] = "A003 APPEND saved (\\Seen) \"05-Jul-2024 10:00:00 +0200\" "
                              "~{5}\r\nab\0cd {2}\r\nxy";

    (void)state;
    c = parse_str("t UID FETCH 7,*:3,$ (BODY.PEEK[1.2.HEADER.FIELDS (From To)]<10.20> UID)");
    assert_string_equal(c->tag, "t");
    assert_int_equal(c->cmd, IMAP_CMD_FETCH);
    assert_true(c->uid);
    assert_int_equal(c->set.n, 3);
    assert_int_equal(c->set.r[0].lo, 7);
    assert_int_equal(c->set.r[0].hi, 7);
    assert_int_equal(c->set.r[1].lo, 3);
    assert_int_equal(c->set.r[1].hi, IMAP_SEQ_STAR);
    assert_int_equal(c->set.r[2].lo, IMAP_SEQ_SAVED);
    assert_int_equal(c->fetch.n, 2);
    assert_int_equal(c->fetch.atts[0].item, IMAP_FETCH_BODY_SECTION);
    assert_true(c->fetch.atts[0].peek);
    assert_int_equal(c->fetch.atts[0].n_parts, 2);
    assert_int_equal(c->fetch.atts[0].parts[1], 2);
    assert_int_equal(c->fetch.atts[0].spec, IMAP_SECTION_HEADER_FIELDS);
    assert_int_equal(c->fetch.atts[0].n_fields, 2);
    assert_string_equal(c->fetch.atts[0].fields[1].s, "To");
    assert_true(c->fetch.atts[0].partial);
    assert_int_equal(c->fetch.atts[0].offset, 10);
    assert_int_equal(c->fetch.atts[0].count, 20);
    assert_int_equal(c->fetch.atts[1].item, IMAP_FETCH_UID);
    imap_command_free(c);

    c = parse_ok(app, sizeof(app) - 1, NULL);
    assert_int_equal(c->cmd, IMAP_CMD_APPEND);
    assert_string_equal(c->mailbox.s, "saved");
    assert_int_equal(c->append.n, 2);
    assert_true(c->append.msgs[0].has_flags);
    assert_int_equal(c->append.msgs[0].n_flags, 1);
    assert_string_equal(c->append.msgs[0].flags[0].s, "\\Seen");
    assert_true(c->append.msgs[0].has_date);
    assert_int_equal(c->append.msgs[0].date.date.year, 2024);
    assert_int_equal(c->append.msgs[0].date.date.month, 7);
    assert_int_equal(c->append.msgs[0].date.hour, 10);
    assert_int_equal(c->append.msgs[0].date.zone, 120);
    assert_true(c->append.msgs[0].data.binary);
    assert_int_equal(c->append.msgs[0].data.len, 5);
    assert_memory_equal(c->append.msgs[0].data.s, "ab\0cd", 5);
    assert_false(c->append.msgs[1].has_flags);
    assert_false(c->append.msgs[1].has_date);
    assert_false(c->append.msgs[1].data.binary);
    assert_string_equal(c->append.msgs[1].data.s, "xy");
    {
        /* the dump keeps the NUL and the literal8 */
        struct buf d = BUF_INIT;
        assert_int_equal(imap_command_write(c, &d), 0);
        assert_int_equal(d.len, sizeof(app) - 1);
        assert_memory_equal(d.data, app, d.len);
        buf_free(&d);
    }
    imap_command_free(c);

    c = parse_str("s SEARCH OR (FROM x TO y) NOT UID 5 LARGER 100");
    k = c->search.keys;
    assert_int_equal(k->key, IMAP_SK_AND);
    k = k->child;
    assert_int_equal(k->key, IMAP_SK_OR);
    assert_int_equal(k->child->key, IMAP_SK_AND);
    assert_int_equal(k->child->child->key, IMAP_SK_FROM);
    assert_string_equal(k->child->child->str.s, "x");
    assert_int_equal(k->child->child->next->key, IMAP_SK_TO);
    assert_int_equal(k->child->next->key, IMAP_SK_NOT);
    assert_int_equal(k->child->next->child->key, IMAP_SK_UID);
    assert_int_equal(k->child->next->child->set.r[0].lo, 5);
    assert_int_equal(k->next->key, IMAP_SK_LARGER);
    assert_int_equal(k->next->num, 100);
    assert_null(k->next->next);
    assert_null(c->search.charset.s);
    imap_command_free(c);

    c = parse_str("s STORE 1 -FLAGS.SILENT (\\Seen)");
    assert_int_equal(c->store.op, IMAP_STORE_REMOVE);
    assert_true(c->store.silent);
    assert_false(c->store.has_unchangedsince);
    imap_command_free(c);

    c = parse_str("l LIST (SUBSCRIBED) \"\" (a b) RETURN (STATUS (SIZE UIDNEXT))");
    assert_int_equal(c->list.sel, IMAP_LSEL_SUBSCRIBED);
    assert_true(c->list.extended);
    assert_int_equal(c->list.n_patterns, 2);
    assert_int_equal(c->list.ret, IMAP_LRET_STATUS);
    assert_int_equal(c->list.status_items, IMAP_STATUS_SIZE | IMAP_STATUS_UIDNEXT);
    assert_string_equal(c->mailbox.s, "");
    imap_command_free(c);

    c = parse_str("i ID (\"name\" NIL)");
    assert_int_equal(c->id.n, 1);
    assert_string_equal(c->id.fields[0].s, "name");
    assert_null(c->id.values[0].s);
    imap_command_free(c);

    c = parse_str("a AUTHENTICATE PLAIN =");
    assert_true(c->auth.has_initial);
    assert_int_equal(c->auth.initial.len, 0);
    imap_command_free(c);
}

/* UTF8 APPEND is there only with UTF8=ACCEPT enabled. */
static void test_utf8_append(void **state)
{
    struct imap_parse_opts o = {0, true};
    static const char in[] = "a APPEND INBOX UTF8 (~{2}\r\n\xc3\xa9)";
    struct imap_command *c;
    struct err e;
    char *d;

    (void)state;
    assert_int_equal(imap_parse(in, sizeof(in) - 1, NULL, &c, &e), -1);
    assert_non_null(strstr(e.text, "needs ENABLE"));
    assert_int_equal(imap_parse("a APPEND INBOX UTF8 ({1}\r\na)", 29, &o, &c, &e), -1);
    assert_non_null(strstr(e.text, "needs a literal8"));
    c = parse_ok(in, sizeof(in) - 1, &o);
    assert_true(c->append.msgs[0].utf8);
    imap_command_free(c);
    d = dump_of(in, sizeof(in) - 1, &o, &e);
    assert_string_equal(d, in);
    free(d);
}

/* Section part numbers and ID pairs are bounded. */
static void test_counts(void **state)
{
    struct buf b = BUF_INIT;
    struct imap_command *c;
    struct err e;

    (void)state;
    assert_int_equal(buf_puts(&b, "a FETCH 1 BODY[1"), 0);
    for (int i = 1; i < 100; i++)
        assert_int_equal(buf_puts(&b, ".1"), 0);
    assert_int_equal(buf_puts(&b, "]"), 0);
    c = parse_ok(b.data, b.len, NULL);
    assert_int_equal(c->fetch.atts[0].n_parts, 100);
    imap_command_free(c);
    buf_truncate(&b, b.len - 1);
    assert_int_equal(buf_puts(&b, ".1]"), 0);
    assert_int_equal(imap_parse(b.data, b.len, NULL, &c, &e), -1);
    assert_non_null(strstr(e.text, "Too many section parts"));

    buf_reset(&b);
    assert_int_equal(buf_puts(&b, "a ID ("), 0);
    for (int i = 0; i < 30; i++)
        assert_int_equal(buf_printf(&b, "%s\"f%d\" \"v\"", i ? " " : "", i), 0);
    assert_int_equal(buf_puts(&b, ")"), 0);
    c = parse_ok(b.data, b.len, NULL);
    assert_int_equal(c->id.n, 30);
    assert_string_equal(c->id.fields[29].s, "f29");
    imap_command_free(c);
    buf_truncate(&b, b.len - 1);
    assert_int_equal(buf_puts(&b, " \"x\" NIL)"), 0);
    assert_int_equal(imap_parse(b.data, b.len, NULL, &c, &e), -1);
    assert_non_null(strstr(e.text, "Too many ID fields"));
    buf_free(&b);
}

/* Nesting is bounded: NOT, OR and parentheses count. */
static void test_depth(void **state)
{
    struct imap_parse_opts o = {8, false};
    struct buf b = BUF_INIT;
    struct imap_command *c;
    struct err e;

    (void)state;
    assert_int_equal(buf_puts(&b, "a SEARCH "), 0);
    for (int i = 0; i < 7; i++)
        assert_int_equal(buf_puts(&b, "NOT "), 0);
    assert_int_equal(buf_puts(&b, "SEEN"), 0);
    c = parse_ok(b.data, b.len, &o);       /* 8 levels: NOT x7 and SEEN */
    imap_command_free(c);
    buf_reset(&b);
    assert_int_equal(buf_puts(&b, "a SEARCH NOT NOT NOT NOT (((((SEEN)))))"), 0);
    assert_int_equal(imap_parse(b.data, b.len, &o, &c, &e), -1);
    assert_non_null(strstr(e.text, "Nesting too deep"));
    buf_reset(&b);
    assert_int_equal(buf_puts(&b, "a SEARCH OR OR OR OR OR OR OR OR 1 2 3 4 5 6 7 8 9"), 0);
    assert_int_equal(imap_parse(b.data, b.len, &o, &c, &e), -1);
    assert_non_null(strstr(e.text, "Nesting too deep"));
    /* the default limit holds off a deep attack without exhausting the stack */
    buf_reset(&b);
    assert_int_equal(buf_puts(&b, "a SEARCH "), 0);
    for (int i = 0; i < 100000; i++)
        assert_int_equal(buf_putc(&b, '('), 0);
    assert_int_equal(imap_parse(b.data, b.len, NULL, &c, &e), -1);
    assert_non_null(strstr(e.text, "Nesting too deep"));
    buf_free(&b);
}

/* ------------------------------------------------------------------ */
/* The reader */

static void log_text(struct buf *log, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int rc;
        if (s[i] == '\r')
            rc = buf_puts(log, "\\r");
        else if (s[i] == '\n')
            rc = buf_puts(log, "\\n");
        else if (s[i] == '\0')
            rc = buf_puts(log, "\\0");
        else
            rc = buf_putc(log, s[i]);
        assert_int_equal(rc, 0);
    }
}

/* Feed in pieces of step octets (0: all at once); return the event log.
 * After a command naming AUTHENTICATE or IDLE the next line is read raw. */
static char *run_reader(const struct imap_limits *lim, const char *in, size_t len, size_t step)
{
    struct imap_reader *r = imap_reader_new(lim);
    struct buf log = BUF_INIT;
    size_t pos = 0;

    while (pos < len) {
        size_t n = step && len - pos > step ? step : len - pos;
        size_t used = 0;
        while (used < n) {
            enum imap_event ev;
            size_t k = imap_reader_feed(r, in + pos + used, n - used, &ev);
            const char *t;
            size_t tl;
            assert_true(k <= n - used);
            used += k;
            if (ev == IMAP_EV_NONE) {
                assert_int_equal(used, n);
                break;
            }
            if (log.len)
                assert_int_equal(buf_putc(&log, '|'), 0);
            switch (ev) {
            case IMAP_EV_CONTINUE:
                assert_true(imap_reader_busy(r));
                assert_int_equal(buf_putc(&log, '+'), 0);
                break;
            case IMAP_EV_COMMAND:
                assert_false(imap_reader_busy(r));
                t = imap_reader_command(r, &tl);
                assert_int_equal(t[tl], '\0');
                assert_int_equal(buf_puts(&log, "C:"), 0);
                log_text(&log, t, tl);
                if (memmem(t, tl, " AUTHENTICATE", 13) || memmem(t, tl, " IDLE", 5))
                    imap_reader_expect_line(r);
                break;
            case IMAP_EV_LINE:
                t = imap_reader_line(r, &tl);
                assert_int_equal(buf_puts(&log, "L:"), 0);
                log_text(&log, t, tl);
                break;
            case IMAP_EV_ERROR: {
                const struct imap_read_error *e = imap_reader_error(r);
                assert_int_equal(buf_printf(&log, "E:%s %s %s",
                                            e->resp == IMAP_RESP_NO ? "NO" : "BAD",
                                            e->tag ? e->tag : "*", e->text), 0);
                break;
            }
            default:
                fail_msg("unexpected event %d", (int)ev);
            }
        }
        pos += n;
    }
    imap_reader_free(r);
    return buf_steal(&log, NULL);
}

static const struct {
    struct imap_limits lim;
    const char *in;
    const char *log;
} transcripts[] = {
    {{0, 0, 0, 0}, "a1 NOOP\r\na2 LOGIN {5}\r\nalice {6+}\r\nsecret\r\n",
     "C:a1 NOOP|+|C:a2 LOGIN {5}\\r\\nalice {6+}\\r\\nsecret"},
    {{0, 0, 0, 0}, "a NOOP\nb NOOP\r\n", "C:a NOOP|C:b NOOP"},
    {{0, 0, 0, 0}, "\r\n\n\r\na NOOP\r\n", "C:a NOOP"},
    {{0, 0, 0, 0}, "a NOOP\r", ""},
    {{0, 0, 0, 0}, "a NOOP\rb\r\n", "C:a NOOP\\rb"},
    /* a literal announcement inside a quoted string is none */
    {{0, 0, 0, 0}, "a SEARCH TEXT \"a {3}\r\nb NOOP\r\n", "C:a SEARCH TEXT \"a {3}|C:b NOOP"},
    {{0, 0, 0, 0}, "a X \"\\\"{3}\r\nb NOOP\r\n", "C:a X \"\\\"{3}|C:b NOOP"},
    {{0, 0, 0, 0}, "a X \"\\\\\" {3}\r\n\"\r\n b\r\n", "+|C:a X \"\\\\\" {3}\\r\\n\"\\r\\n b"},
    /* literal bytes are not scanned: a quote or a brace in them changes nothing */
    {{0, 0, 0, 0}, "a X {3+}\r\n\"{1\r\nb NOOP\r\n", "C:a X {3+}\\r\\n\"{1|C:b NOOP"},
    /* malformed announcements are not literals */
    {{0, 0, 0, 0}, "a X {}\r\na X {+}\r\na X {1a}\r\na X 1}\r\n",
     "C:a X {}|C:a X {+}|C:a X {1a}|C:a X 1}"},
    /* literal8 */
    {{0, 0, 0, 0}, "a APPEND x ~{3}\r\na\0b\r\n", "+|C:a APPEND x ~{3}\\r\\na\\0b"},
    /* zero-length literals */
    {{0, 0, 0, 0}, "a LOGIN {0}\r\n {0+}\r\n\r\nb NOOP\r\n",
     "+|C:a LOGIN {0}\\r\\n {0+}\\r\\n|C:b NOOP"},
    /* too big: a synchronizing literal is not awaited */
    {{0, 10, 0, 0}, "a APPEND x {11}\r\nb NOOP\r\n", "E:NO a [TOOBIG] Literal too big|C:b NOOP"},
    {{0, 10, 0, 0}, "a APPEND x {10}\r\n0123456789\r\n", "+|C:a APPEND x {10}\\r\\n0123456789"},
    /* too big: a non-synchronizing one is read and dropped, with the rest of the command */
    {{0, 10, 0, 0}, "a APPEND x {11+}\r\n0123456789A\r\nb NOOP\r\n",
     "E:NO a [TOOBIG] Literal too big|C:b NOOP"},
    {{0, 10, 0, 0}, "a APPEND x {11+}\r\n0123456789A {3+}\r\nx\r\n {2}\r\nb NOOP\r\n",
     "E:NO a [TOOBIG] Literal too big|C:b NOOP"},
    {{0, 10, 0, 0}, "a APPEND x {11+}\r\n0123456789A {3}\r\nb NOOP\r\n",
     "E:NO a [TOOBIG] Literal too big|C:b NOOP"},
    /* LITERAL-: {n+} over its own limit is BAD [TOOBIG]; {n} of that size is fine */
    {{0, 100, 4, 0}, "a LOGIN {5+}\r\nalice x\r\nb LOGIN {5}\r\nalice x\r\n",
     "E:BAD a [TOOBIG] Non-synchronizing literal too big|+|C:b LOGIN {5}\\r\\nalice x"},
    /* sizes that cannot be: refused before anything is allocated */
    {{0, 0, 0, 0}, "a APPEND x {4294967295}\r\nb NOOP\r\n",
     "E:NO a [TOOBIG] Literal too big|C:b NOOP"},
    {{0, 0, 0, 0}, "a APPEND x {18446744073709551615}\r\nb NOOP\r\n",
     "E:NO a [TOOBIG] Literal too big|C:b NOOP"},
    {{0, 0, 0, 0}, "a APPEND x {99999999999999999999999999}\r\nb NOOP\r\n",
     "E:NO a [TOOBIG] Literal too big|C:b NOOP"},
    {{0, 0, 0, 0}, "+x {4294967295}\r\nb NOOP\r\n", "E:NO * [TOOBIG] Literal too big|C:b NOOP"},
    /* the whole command is bounded, literals and lines together */
    {{20, 100, 0, 30}, "a LOGIN {25}\r\nb NOOP\r\n", "E:NO a [TOOBIG] Literal too big|C:b NOOP"},
    {{20, 100, 0, 30}, "a X {5}\r\n01234 {5}\r\n01234 {5}\r\nb NOOP\r\n",
     "+|+|E:NO a [TOOBIG] Literal too big|C:b NOOP"},
    {{20, 100, 0, 30}, "a X {0+}\r\n0123456789 {0+}\r\n0123456789\r\nb NOOP\r\n",
     "E:BAD a Command line too long|C:b NOOP"},
    /* line length: exactly the limit is fine (CR not counted), one more is not */
    {{20, 0, 0, 0}, "a NOOP 0123456789012\r\nb NOOP\r\n", "C:a NOOP 0123456789012|C:b NOOP"},
    {{20, 0, 0, 0}, "a NOOP 0123456789012\nb NOOP\r\n", "C:a NOOP 0123456789012|C:b NOOP"},
    {{20, 0, 0, 0}, "a NOOP 01234567890123\r\nb NOOP\r\n",
     "E:BAD a Command line too long|C:b NOOP"},
    {{20, 0, 0, 0}, "a NOOP 01234567890123456789012345678901234567890\r\nb NOOP\r\n",
     "E:BAD a Command line too long|C:b NOOP"},
    /* a long line's literal is still read (non-synchronizing) or not awaited */
    {{20, 0, 0, 0}, "a X 0123456789012345678901 {3+}\r\nabc\r\nb NOOP\r\n",
     "E:BAD a Command line too long|C:b NOOP"},
    {{20, 0, 0, 0}, "a X 0123456789012345678901 {3}\r\nb NOOP\r\n",
     "E:BAD a Command line too long|C:b NOOP"},
    {{20, 0, 0, 0}, "a X 0123456789012345678901 {0+}\r\n\r\nb NOOP\r\n",
     "E:BAD a Command line too long|C:b NOOP"},
    {{20, 0, 0, 0}, "a X 0123456789012345678901 \"{3+}\r\nb NOOP\r\n",
     "E:BAD a Command line too long|C:b NOOP"},
    /* a tag cut short by the line limit is none, however the line is cut in
     * pieces (found by fuzz_imap_parse: regress/imap_parse/long_tag) */
    {{20, 0, 0, 0}, "abcdefghijklmnopqrstuvwxyz NOOP\r\nb NOOP\r\n",
     "E:BAD * Command line too long|C:b NOOP"},
    {{20, 0, 0, 0}, "abcdefghijklmnopqrst NOOP 1\r\nb NOOP\r\n",
     "E:BAD * Command line too long|C:b NOOP"},
    {{20, 0, 0, 0}, "abcdefghijklmnopqrs NOOP 12\r\nb NOOP\r\n",
     "E:BAD abcdefghijklmnopqrs Command line too long|C:b NOOP"},
    /* a long line after a literal: the tag is the command's */
    {{20, 0, 0, 0}, "t1 X {2}\r\nab 0123456789012345678901234\r\nb NOOP\r\n",
     "+|E:BAD t1 Command line too long|C:b NOOP"},
    /* raw lines for AUTHENTICATE and IDLE: no literal processing */
    {{0, 0, 0, 0}, "a AUTHENTICATE PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\nb NOOP\r\n",
     "C:a AUTHENTICATE PLAIN|L:AGFsaWNlAHNlY3JldA==|C:b NOOP"},
    {{0, 0, 0, 0}, "a AUTHENTICATE X\r\nx {5}\r\nb NOOP\r\n",
     "C:a AUTHENTICATE X|L:x {5}|C:b NOOP"},
    {{0, 0, 0, 0}, "a AUTHENTICATE X\r\n\r\nb NOOP\r\n", "C:a AUTHENTICATE X|L:|C:b NOOP"},
    {{0, 0, 0, 0}, "i IDLE\r\nDONE\r\n", "C:i IDLE|L:DONE"},
    {{10, 0, 0, 0}, "i IDLE\r\nDONE 0123456789 {3+}\r\nb NOOP\r\n",
     "C:i IDLE|E:BAD * Line too long|C:b NOOP"},
};

static void test_reader(void **state)
{
    static const size_t steps[] = {0, 1, 2, 3, 7, 64};

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(transcripts); i++) {
        const char *in = transcripts[i].in;
        size_t len = strlen(in);
        /* transcripts with a NUL spell it "\0" inside a literal8 of 3 */
        if (strstr(in, "~{3}\r\na"))
            len = (size_t)(strstr(in, "~{3}\r\na") - in) + 10 + 2;
        for (size_t s = 0; s < ARRAY_LEN(steps); s++) {
            char *log = run_reader(&transcripts[i].lim, in, len, steps[s]);
            if (strcmp(log, transcripts[i].log) != 0)
                fail_msg("transcript %zu, step %zu\n  got:  %s\n  want: %s", i, steps[s], log,
                         transcripts[i].log);
            free(log);
        }
    }
}

/* What the reader assembles parses, and a parse failure of one command does
 * not disturb the next. */
static void test_reader_then_parse(void **state)
{
    static const char in[] = "a LOGIN {5}\r\nalice \"x\"\r\nb FETCH 1 (BODY[\r\n"
                             "c APPEND x (\\Seen) {3+}\r\nabc\r\nd NOOP\r\n";
    static const char *const want[] = {"a LOGIN alice x", NULL, "c APPEND x (\\Seen) {3}\r\nabc",
                                       "d NOOP"};
    struct imap_reader *r = imap_reader_new(NULL);
    size_t pos = 0, n_cmd = 0;

    (void)state;
    while (pos < sizeof(in) - 1) {
        enum imap_event ev;
        pos += imap_reader_feed(r, in + pos, sizeof(in) - 1 - pos, &ev);
        if (ev == IMAP_EV_COMMAND) {
            size_t len;
            const char *t = imap_reader_command(r, &len);
            struct imap_command *c;
            struct err e;
            assert_true(n_cmd < ARRAY_LEN(want));
            if (want[n_cmd]) {
                struct buf d = BUF_INIT;
                assert_int_equal(imap_parse(t, len, NULL, &c, &e), 0);
                assert_int_equal(imap_command_write(c, &d), 0);
                assert_string_equal(buf_cstr(&d), want[n_cmd]);
                buf_free(&d);
                imap_command_free(c);
            } else {
                assert_int_equal(imap_parse(t, len, NULL, &c, &e), -1);
            }
            n_cmd++;
        }
    }
    assert_int_equal(n_cmd, ARRAY_LEN(want));
    imap_reader_free(r);
}

/* A huge announced literal allocates nothing: the reader's memory stays
 * small while it discards a non-synchronizing one. */
static void test_reader_huge(void **state)
{
    struct imap_reader *r = imap_reader_new(NULL);
    static const char head[] = "a APPEND x {3000000000+}\r\n";
    char chunk[4096];
    struct mallinfo2 before, after;
    enum imap_event ev;
    size_t n;

    (void)state;
    memset(chunk, 'x', sizeof(chunk));
    before = mallinfo2();
    n = imap_reader_feed(r, head, sizeof(head) - 1, &ev);
    assert_int_equal(n, sizeof(head) - 1);
    assert_int_equal(ev, IMAP_EV_ERROR);
    for (int i = 0; i < 2000; i++) {
        assert_int_equal(imap_reader_feed(r, chunk, sizeof(chunk), &ev), sizeof(chunk));
        assert_int_equal(ev, IMAP_EV_NONE);
        assert_true(imap_reader_busy(r));
    }
    after = mallinfo2();
    assert_true(after.uordblks < before.uordblks + 65536);
    imap_reader_free(r);
}

/* ------------------------------------------------------------------ */
/* Response side */

static void test_write_strings(void **state)
{
    static const struct {
        const char *s;
        bool utf8;
        int kind;                    /* 0 string, 1 astring, 2 nstring(NULL if s NULL) */
        const char *want;
    } t[] = {
        {"abc", false, 0, "\"abc\""},
        {"a\"b\\", false, 0, "\"a\\\"b\\\\\""},
        {"", false, 0, "\"\""},
        {"a\r\nb", false, 0, "{4}\r\na\r\nb"},
        {"caf\xc3\xa9", false, 0, "{5}\r\ncaf\xc3\xa9"},
        {"caf\xc3\xa9", true, 0, "\"caf\xc3\xa9\""},
        {"caf\xc3", true, 0, "{4}\r\ncaf\xc3"},
        {"INBOX", false, 1, "INBOX"},
        {"a]b", false, 1, "a]b"},
        {"", false, 1, "\"\""},
        {"a b", false, 1, "\"a b\""},
        {"NIL", false, 1, "\"NIL\""},
        {"a%", false, 1, "\"a%\""},
        {"x{1}", false, 1, "\"x{1}\""},
        {NULL, false, 2, "NIL"},
        {"nil", false, 2, "\"nil\""},
    };
    struct buf b = BUF_INIT;
    char big[1100];

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(t); i++) {
        size_t n = t[i].s ? strlen(t[i].s) : 0;
        int rc = t[i].kind == 0   ? imap_write_string(&b, t[i].s, n, t[i].utf8)
                 : t[i].kind == 1 ? imap_write_astring(&b, t[i].s, n, t[i].utf8)
                                  : imap_write_nstring(&b, t[i].s, n, t[i].utf8);
        assert_int_equal(rc, 0);
        assert_string_equal(buf_cstr(&b), t[i].want);
        buf_reset(&b);
    }
    memset(big, 'a', sizeof(big));
    assert_int_equal(imap_write_string(&b, big, 1024, false), 0);
    assert_int_equal(b.data[0], '"');
    buf_reset(&b);
    assert_int_equal(imap_write_string(&b, big, 1025, false), 0);
    assert_memory_equal(b.data, "{1025}\r\n", 8);
    buf_free(&b);
    /* a ceiling is reported */
    buf_init(&b, 4);
    assert_int_equal(imap_write_string(&b, "abcdef", 6, false), -1);
    buf_free(&b);
}

static void test_mailbox_names(void **state)
{
    static const struct {
        const char *wire;
        bool utf8;
        const char *name;            /* NULL: refused */
    } dec[] = {
        {"inbox", false, "INBOX"},
        {"InBoX", true, "INBOX"},
        {"INBOX.Entw&APw-rfe", false, "INBOX.Entw\xc3\xbcrfe"},
        {"INBOX.Entw&APw-rfe", true, "INBOX.Entw&APw-rfe"},
        {"Entw\xc3\xbcrfe", true, "Entw\xc3\xbcrfe"},
        {"Entw\xc3\xbcrfe", false, NULL},
        {"Entw\xc3", true, NULL},
        {"a&AOk", false, NULL},
        {"&AAk-", false, NULL},          /* a TAB */
        {"&AIU-", false, NULL},          /* a C1 control */
        {"a\tb", true, NULL},
        {"a&-b", false, "a&b"},
    };
    static const struct {
        const char *name;
        bool utf8;
        const char *wire;
    } enc[] = {
        {"INBOX", false, "INBOX"},
        {"Entw\xc3\xbcrfe", false, "Entw&APw-rfe"},
        {"Entw\xc3\xbcrfe", true, "\"Entw\xc3\xbcrfe\""},
        {"a b&", false, "\"a b&-\""},
        {"", false, "\"\""},
    };
    struct buf b = BUF_INIT;
    struct err e;

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(dec); i++) {
        int rc = imap_mailbox_decode(dec[i].wire, strlen(dec[i].wire), dec[i].utf8, &b, &e);
        if (dec[i].name) {
            if (rc != 0)
                fail_msg("%s refused: %s", dec[i].wire, e.text);
            assert_string_equal(buf_cstr(&b), dec[i].name);
        } else {
            if (rc != -1)
                fail_msg("%s accepted", dec[i].wire);
            assert_int_equal(e.code, ERR_PARSE);
            assert_int_equal(b.len, 0);
        }
        buf_reset(&b);
    }
    for (size_t i = 0; i < ARRAY_LEN(enc); i++) {
        assert_int_equal(imap_write_mailbox(&b, enc[i].name, strlen(enc[i].name), enc[i].utf8,
                                            &e), 0);
        assert_string_equal(buf_cstr(&b), enc[i].wire);
        buf_reset(&b);
    }
    assert_int_equal(imap_write_mailbox(&b, "\xc3", 1, false, &e), -1);
    assert_int_equal(imap_write_mailbox(&b, "\xc3", 1, true, &e), -1);
    buf_free(&b);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(imap_cmd_name(IMAP_CMD_CAPABILITY), "CAPABILITY");
    assert_string_equal(imap_cmd_name(IMAP_CMD_THREAD), "THREAD");
    assert_string_equal(imap_cmd_name((enum imap_cmd)999), "?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forms),
        cmocka_unit_test(test_bad),
        cmocka_unit_test(test_structure),
        cmocka_unit_test(test_utf8_append),
        cmocka_unit_test(test_counts),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_reader),
        cmocka_unit_test(test_reader_then_parse),
        cmocka_unit_test(test_reader_huge),
        cmocka_unit_test(test_write_strings),
        cmocka_unit_test(test_mailbox_names),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
