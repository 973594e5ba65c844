/*
 * keymap: keys, key-sequence syntax, menus, functions and key bindings.
 *
 * A key is an int: a Unicode code point (control characters included: ^A is
 * 1, <Esc> is 27, <Enter> is 10, <Return> is 13), or one of the KEYC_*
 * values above 0x10ffff for keys that have no character (arrows, function
 * keys...).  They are named KEYC_* and not KEY_* so that a file may include
 * both this header and curses.h; the UI layer maps curses key codes to
 * these.  A "meta" key (Alt-x) is the two keys <Esc> x, as in mutt.
 *
 * Key-sequence syntax (bind, macro, push), after rcfile's own quoting:
 *   x              the character (any UTF-8 character)
 *   ^X  ^x         control-X; also ^@ ^[ (Esc) ^\ ^] ^_ and ^? (DEL);
 *                  "^^" is a literal '^', and a '^' at the end is itself
 *   \Cx  \cx       control-x, like ^x
 *   \e \E \t \n \r \f   Esc, Tab, LF (<Enter>), CR (<Return>), FF
 *   \NNN           the octal character code NNN (1 to 3 digits, up to \377)
 *   \\  \<  \^     a literal backslash, '<', '^' (and \c for any other c);
 *                  a backslash at the end is itself
 *   <Name>         a named key, case-insensitive: <Enter> <Return>
 *                  <KeypadEnter> <Esc> <Tab> <BackTab> <Space> <Backspace>
 *                  <Delete> <Insert> <Home> <End> <PageUp> <PageDown> <Up>
 *                  <Down> <Left> <Right> <F1>..<F63>, and <NNN> (octal code)
 *   <function>     in macros and push only: the named function (as mutt)
 *   <              a '<' that does not start one of the above is itself
 * A word that looks like <name> but names nothing is an error.
 *
 * Note that rcfile handles backslashes first: an unquoted \Cx reaches us as
 * "Cx" (two keys).  Write control keys as ^X, or quote the word: '\Cx'.
 * The bind and macro commands refuse a two-character key that looks like
 * such a lost escape (C or c followed by a control-able character, e or E
 * followed by a printable one) rather than let its first key silently
 * become a prefix; the two keys can still be had as '\103f'.
 *
 * Menus and fallback.  Each menu has its own bindings.  A key sequence that
 * is not bound (and is not the prefix of a binding) in a menu is looked up in
 * the generic menu, for every menu except the line editor; a generic binding
 * counts only if its function is valid in the menu (so first-entry bound in
 * generic does nothing in the pager).  Binding a key to "noop" hides the
 * generic binding; unbind removes a binding so the generic one shows again.
 *
 * A keymap is a trie per menu: "gg" and "\Cxb" are sequences of keys and a
 * lookup returns FOUND, PREFIX (read another key) or NONE.  A binding cannot
 * also be a prefix: binding "g" removes "gg" and the reverse, as in mutt.
 */
#ifndef CORREO_KEYMAP_H
#define CORREO_KEYMAP_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"
#include "rcfile.h"

/* ---- keys ------------------------------------------------------------ */

#define KEYC_BASE 0x110000
enum keyc {
    KEYC_UP = KEYC_BASE + 1,
    KEYC_DOWN,
    KEYC_LEFT,
    KEYC_RIGHT,
    KEYC_HOME,
    KEYC_END,
    KEYC_PAGEUP,
    KEYC_PAGEDOWN,
    KEYC_INSERT,
    KEYC_DELETE,
    KEYC_BACKSPACE,
    KEYC_BACKTAB,
    KEYC_KP_ENTER,
    KEYC_F0 = KEYC_BASE + 0x100,    /* KEYC_F(n) is function key n */
    KEYC_FUNC = KEYC_BASE + 0x1000, /* KEYC_FUNC + op: "<op-name>" in a macro */
};
#define KEYC_F(n)  (KEYC_F0 + (n))
#define KEYC_F_MAX 63

#define KEYMAP_SEQ_MAX   32     /* keys in a bound sequence */
#define KEYMAP_MACRO_MAX 4096   /* keys in a macro */
#define KEY_NAME_MAX     48     /* bytes for key_name(), NUL included */

/* ---- menus ----------------------------------------------------------- */

enum km_menu {
    MENU_GENERIC,
    MENU_INDEX,
    MENU_PAGER,
    MENU_BROWSER,
    MENU_ATTACH,
    MENU_COMPOSE,
    MENU_EDITOR,    /* the line editor of prompts */
    MENU_QUERY,
    MENU_COUNT
};

/* ---- functions ------------------------------------------------------- */

/*
 * X(ID, "name", MENUS, "description").  MENUS says where a function may be
 * bound: G generic (every menu but the pager and the editor), I index,
 * P pager, B browser, A attach, C compose, E editor, Q query, ALL all menus.
 */
#define KEYMAP_FUNCTIONS(X) \
    X(NOOP, "noop", ALL, "do nothing (hides a generic binding)") \
    /* generic */ \
    X(TOP_PAGE, "top-page", G, "move to the top of the page") \
    X(MIDDLE_PAGE, "middle-page", G, "move to the middle of the page") \
    X(BOTTOM_PAGE, "bottom-page", G, "move to the bottom of the page") \
    X(NEXT_ENTRY, "next-entry", G | P, "move to the next entry") \
    X(PREVIOUS_ENTRY, "previous-entry", G | P, "move to the previous entry") \
    X(FIRST_ENTRY, "first-entry", G, "move to the first entry") \
    X(LAST_ENTRY, "last-entry", G, "move to the last entry") \
    X(NEXT_PAGE, "next-page", G | P, "move to the next page") \
    X(PREVIOUS_PAGE, "previous-page", G | P, "move to the previous page") \
    X(HALF_UP, "half-up", G | P, "scroll up half a page") \
    X(HALF_DOWN, "half-down", G | P, "scroll down half a page") \
    X(NEXT_LINE, "next-line", G | P, "scroll down one line") \
    X(PREVIOUS_LINE, "previous-line", G | P, "scroll up one line") \
    X(CURRENT_TOP, "current-top", G, "put the current entry at the top of the screen") \
    X(CURRENT_MIDDLE, "current-middle", G, "put the current entry in the middle of the screen") \
    X(CURRENT_BOTTOM, "current-bottom", G, "put the current entry at the bottom of the screen") \
    X(JUMP, "jump", G | P, "jump to an entry by number") \
    X(SEARCH, "search", G | P, "search forward for a regular expression") \
    X(SEARCH_REVERSE, "search-reverse", G | P, "search backward for a regular expression") \
    X(SEARCH_NEXT, "search-next", G | P, "go to the next match") \
    X(SEARCH_OPPOSITE, "search-opposite", G | P, "go to the next match in the other direction") \
    X(HELP, "help", G | P, "show the bindings of this menu") \
    X(EXIT, "exit", G | P, "leave this menu") \
    X(QUIT, "quit", G | P, "save changes to the mailbox and quit") \
    X(ENTER_COMMAND, "enter-command", G | P, "run a configuration command") \
    X(REFRESH, "refresh", G | P, "clear and redraw the screen") \
    X(SHELL_ESCAPE, "shell-escape", G | P, "run a command in a subshell") \
    X(TAG_PREFIX, "tag-prefix", G, "apply the next function to the tagged entries") \
    X(TAG_PREFIX_COND, "tag-prefix-cond", G, "apply the next function to tagged entries, if any") \
    X(END_COND, "end-cond", G, "end of a conditional tag-prefix (does nothing)") \
    X(TAG_ENTRY, "tag-entry", G | P, "tag or untag the current entry") \
    X(SELECT_ENTRY, "select-entry", G, "select the current entry") \
    X(WHAT_KEY, "what-key", G | P, "show the code of a key press") \
    X(CHECK_STATS, "check-stats", G | P, "count the messages in every mailbox") \
    X(ERROR_HISTORY, "error-history", G | P, "show the recent error messages") \
    /* index and pager */ \
    X(DISPLAY_MESSAGE, "display-message", I, "show the message") \
    X(DISPLAY_TOGGLE_WEED, "display-toggle-weed", I | P | A | C, "show or hide the ignored headers") \
    X(CHANGE_FOLDER, "change-folder", I | P, "open another mailbox") \
    X(CHANGE_FOLDER_READONLY, "change-folder-readonly", I | P, "open another mailbox read-only") \
    X(BROWSE_MAILBOXES, "browse-mailboxes", I | P, "list the mailboxes") \
    X(NEXT_UNREAD_MAILBOX, "next-unread-mailbox", I | P, "open the next mailbox with new mail") \
    X(BUFFY_LIST, "buffy-list", I | P | B, "list the mailboxes with new mail") \
    X(DELETE_MESSAGE, "delete-message", I | P, "mark the message for deletion") \
    X(UNDELETE_MESSAGE, "undelete-message", I | P, "unmark the message for deletion") \
    X(DELETE_THREAD, "delete-thread", I | P, "mark the whole thread for deletion") \
    X(UNDELETE_THREAD, "undelete-thread", I | P, "unmark the whole thread for deletion") \
    X(DELETE_SUBTHREAD, "delete-subthread", I | P, "mark the subthread for deletion") \
    X(UNDELETE_SUBTHREAD, "undelete-subthread", I | P, "unmark the subthread for deletion") \
    X(DELETE_PATTERN, "delete-pattern", I, "mark the messages matching a pattern for deletion") \
    X(UNDELETE_PATTERN, "undelete-pattern", I, "unmark the messages matching a pattern") \
    X(PURGE_MESSAGE, "purge-message", I | P, "delete the message for good, not to the trash") \
    X(UNDO, "undo", I | P, "unmark every message marked for deletion since the last sync") \
    X(FLAG_MESSAGE, "flag-message", I | P, "toggle the important flag") \
    X(TOGGLE_NEW, "toggle-new", I | P, "toggle the new (unread) flag") \
    X(SET_FLAG, "set-flag", I | P, "set a flag on the message") \
    X(CLEAR_FLAG, "clear-flag", I | P, "clear a flag on the message") \
    X(MARK_MESSAGE, "mark-message", I, "make a hotkey macro for the message") \
    X(READ_THREAD, "read-thread", I | P, "mark the thread as read") \
    X(READ_SUBTHREAD, "read-subthread", I | P, "mark the subthread as read") \
    X(TAG_PATTERN, "tag-pattern", I, "tag the messages matching a pattern") \
    X(UNTAG_PATTERN, "untag-pattern", I, "untag the messages matching a pattern") \
    X(TAG_THREAD, "tag-thread", I, "tag the thread") \
    X(TAG_SUBTHREAD, "tag-subthread", I, "tag the subthread") \
    X(LIMIT, "limit", I, "show only the messages matching a pattern") \
    X(SHOW_LIMIT, "show-limit", I, "show the current limit pattern") \
    X(SORT_MAILBOX, "sort-mailbox", I | P, "sort the messages") \
    X(SORT_REVERSE, "sort-reverse", I | P | B, "sort in reverse order") \
    X(SAVE_MESSAGE, "save-message", I | P, "move the message to a mailbox") \
    X(COPY_MESSAGE, "copy-message", I | P, "copy the message to a mailbox") \
    X(DECODE_SAVE, "decode-save", I | P, "move a decoded copy to a mailbox") \
    X(DECODE_COPY, "decode-copy", I | P, "copy a decoded copy to a mailbox") \
    X(SYNC_MAILBOX, "sync-mailbox", I | P, "write the changes to the mailbox") \
    X(TOGGLE_WRITE, "toggle-write", I | P, "toggle whether the mailbox is written") \
    X(PIPE_MESSAGE, "pipe-message", I | P, "pipe the message to a command") \
    X(PRINT_MESSAGE, "print-message", I | P, "print the message") \
    X(NEXT_UNDELETED, "next-undeleted", I | P, "move to the next message not deleted") \
    X(PREVIOUS_UNDELETED, "previous-undeleted", I | P, "move to the previous message not deleted") \
    X(NEXT_NEW, "next-new", I | P, "move to the next new message") \
    X(PREVIOUS_NEW, "previous-new", I | P, "move to the previous new message") \
    X(NEXT_NEW_THEN_UNREAD, "next-new-then-unread", I | P, "move to the next new, else unread, message") \
    X(PREVIOUS_NEW_THEN_UNREAD, "previous-new-then-unread", I | P, "move to the previous new, else unread, message") \
    X(NEXT_UNREAD, "next-unread", I | P, "move to the next unread message") \
    X(PREVIOUS_UNREAD, "previous-unread", I | P, "move to the previous unread message") \
    X(NEXT_THREAD, "next-thread", I | P, "move to the next thread") \
    X(PREVIOUS_THREAD, "previous-thread", I | P, "move to the previous thread") \
    X(NEXT_SUBTHREAD, "next-subthread", I | P, "move to the next subthread") \
    X(PREVIOUS_SUBTHREAD, "previous-subthread", I | P, "move to the previous subthread") \
    X(PARENT_MESSAGE, "parent-message", I | P, "move to the parent message") \
    X(ROOT_MESSAGE, "root-message", I | P, "move to the root of the thread") \
    X(BREAK_THREAD, "break-thread", I | P, "make the message the start of a new thread") \
    X(LINK_THREADS, "link-threads", I | P, "link the tagged messages to this one") \
    X(COLLAPSE_THREAD, "collapse-thread", I, "collapse or expand the thread") \
    X(COLLAPSE_ALL, "collapse-all", I, "collapse or expand every thread") \
    X(VIEW_ATTACHMENTS, "view-attachments", I | P, "list the attachments") \
    X(MAIL, "mail", I | P | Q, "write a new message") \
    X(REPLY, "reply", I | P | A, "reply to the sender") \
    X(GROUP_REPLY, "group-reply", I | P | A, "reply to all recipients") \
    X(LIST_REPLY, "list-reply", I | P | A, "reply to the mailing list") \
    X(FORWARD_MESSAGE, "forward-message", I | P | A, "forward the message") \
    X(BOUNCE_MESSAGE, "bounce-message", I | P | A, "send the message unchanged to someone else") \
    X(RESEND_MESSAGE, "resend-message", I | P | A, "use the message as a template for a new one") \
    X(COMPOSE_TO_SENDER, "compose-to-sender", I | P | A, "write a new message to the sender") \
    X(RECALL_MESSAGE, "recall-message", I | P, "continue a postponed message") \
    X(EDIT, "edit", I | P, "edit the raw message") \
    X(EDIT_TYPE, "edit-type", I | P | A | C, "edit the content type of an attachment") \
    X(CREATE_ALIAS, "create-alias", I | P | Q, "make an alias from the sender") \
    X(DISPLAY_ADDRESS, "display-address", I | P, "show the full address of the sender") \
    X(QUERY, "query", I | Q, "look up addresses with the query command") \
    X(SHOW_VERSION, "show-version", I | P, "show the version of correo") \
    X(FETCH_MAIL, "fetch-mail", I, "download new mail from the pop:// and pops:// accounts") \
    X(VFOLDER_FROM_QUERY, "vfolder-from-query", I, "open a notmuch query as a virtual folder") \
    X(MODIFY_LABELS, "modify-labels", I, "add (+tag) or remove (-tag) notmuch labels") \
    /* pager only */ \
    X(TOP, "top", P, "go to the top of the message") \
    X(BOTTOM, "bottom", P, "go to the bottom of the message") \
    X(TOGGLE_QUOTED, "toggle-quoted", P, "hide or show the quoted text") \
    X(SKIP_QUOTED, "skip-quoted", P, "skip past the quoted text") \
    X(SKIP_HEADERS, "skip-headers", P, "skip past the headers") \
    X(SEARCH_TOGGLE, "search-toggle", P, "toggle the highlighting of search matches") \
    /* browser */ \
    X(CHANGE_DIR, "change-dir", B, "change directories") \
    X(CHECK_NEW, "check-new", B, "check the mailboxes for new mail") \
    X(DESCEND_DIRECTORY, "descend-directory", B, "enter the directory") \
    X(DISPLAY_FILENAME, "display-filename", B, "show the full name of the entry") \
    X(ENTER_MASK, "enter-mask", B, "show only the names matching a pattern") \
    X(SELECT_NEW, "select-new", B, "open a new mailbox by name") \
    X(SORT, "sort", B, "sort the entries") \
    X(TOGGLE_MAILBOXES, "toggle-mailboxes", B, "switch between mailboxes and all files") \
    X(VIEW_FILE, "view-file", B, "view the file") \
    X(CREATE_MAILBOX, "create-mailbox", B, "create a mailbox") \
    X(DELETE_MAILBOX, "delete-mailbox", B, "delete the mailbox") \
    X(RENAME_MAILBOX, "rename-mailbox", B, "rename the mailbox") \
    X(SUBSCRIBE, "subscribe", B, "subscribe to the mailbox") \
    X(UNSUBSCRIBE, "unsubscribe", B, "unsubscribe from the mailbox") \
    X(TOGGLE_SUBSCRIBED, "toggle-subscribed", B, "switch between subscribed and all mailboxes") \
    X(GOTO_FOLDER, "goto-folder", B, "go to the $folder directory") \
    /* attachments */ \
    X(VIEW_ATTACH, "view-attach", A | C, "view the attachment") \
    X(VIEW_MAILCAP, "view-mailcap", A, "view the attachment with its mailcap entry") \
    X(VIEW_TEXT, "view-text", A, "view the attachment as text") \
    X(VIEW_PAGER, "view-pager", A, "view the attachment in the pager") \
    X(SAVE_ENTRY, "save-entry", A, "save the attachment to a file") \
    X(PIPE_ENTRY, "pipe-entry", A | C, "pipe the attachment to a command") \
    X(PRINT_ENTRY, "print-entry", A | C, "print the attachment") \
    X(DELETE_ENTRY, "delete-entry", A, "delete the attachment") \
    X(UNDELETE_ENTRY, "undelete-entry", A, "undelete the attachment") \
    X(COLLAPSE_PARTS, "collapse-parts", A, "collapse or expand the parts") \
    /* compose */ \
    X(ATTACH_FILE, "attach-file", C, "attach files") \
    X(ATTACH_MESSAGE, "attach-message", C, "attach messages") \
    X(EDIT_BCC, "edit-bcc", C, "edit the Bcc list") \
    X(EDIT_CC, "edit-cc", C, "edit the Cc list") \
    X(EDIT_DESCRIPTION, "edit-description", C, "edit the attachment description") \
    X(EDIT_ENCODING, "edit-encoding", C, "edit the attachment transfer encoding") \
    X(EDIT_FCC, "edit-fcc", C, "edit the mailbox a copy is saved to") \
    X(EDIT_FILE, "edit-file", C, "edit the attached file") \
    X(EDIT_FROM, "edit-from", C, "edit the From field") \
    X(EDIT_HEADERS, "edit-headers", C, "edit the message with its headers") \
    X(EDIT_MESSAGE, "edit-message", C, "edit the message") \
    X(EDIT_MIME, "edit-mime", C, "edit the attachment with its mailcap entry") \
    X(EDIT_REPLY_TO, "edit-reply-to", C, "edit the Reply-To field") \
    X(EDIT_SUBJECT, "edit-subject", C, "edit the subject") \
    X(EDIT_TO, "edit-to", C, "edit the To list") \
    X(COPY_FILE, "copy-file", C, "save the attachment to a file") \
    X(DETACH_FILE, "detach-file", C, "remove the attachment") \
    X(FILTER_ENTRY, "filter-entry", C, "filter the attachment through a command") \
    X(GET_ATTACHMENT, "get-attachment", C, "get a temporary copy of the attachment") \
    X(ISPELL, "ispell", C, "check the spelling of the message") \
    X(NEW_MIME, "new-mime", C, "compose a new attachment with its mailcap entry") \
    X(POSTPONE_MESSAGE, "postpone-message", C, "save the message to send later") \
    X(RENAME_ATTACHMENT, "rename-attachment", C, "change the file name sent with the attachment") \
    X(RENAME_FILE, "rename-file", C, "rename the attached file") \
    X(SEND_MESSAGE, "send-message", C, "send the message") \
    X(TOGGLE_DISPOSITION, "toggle-disposition", C, "toggle between inline and attachment") \
    X(TOGGLE_RECODE, "toggle-recode", C, "toggle recoding of the attachment") \
    X(TOGGLE_UNLINK, "toggle-unlink", C, "toggle deleting the file after sending") \
    X(UPDATE_ENCODING, "update-encoding", C, "update the encoding of the attachment") \
    X(WRITE_FCC, "write-fcc", C, "write the message to a mailbox") \
    X(MOVE_UP, "move-up", C, "move the attachment up") \
    X(MOVE_DOWN, "move-down", C, "move the attachment down") \
    /* line editor */ \
    X(BACKSPACE, "backspace", E, "delete the character before the cursor") \
    X(BACKWARD_CHAR, "backward-char", E, "move the cursor one character left") \
    X(BACKWARD_WORD, "backward-word", E, "move the cursor to the start of the word") \
    X(BOL, "bol", E, "move to the start of the line") \
    X(BUFFY_CYCLE, "buffy-cycle", E, "at a mailbox prompt, cycle through mailboxes with new mail") \
    X(CAPITALIZE_WORD, "capitalize-word", E, "capitalize the word") \
    X(COMPLETE, "complete", E, "complete the file name or alias") \
    X(COMPLETE_QUERY, "complete-query", E, "complete the address with a query") \
    X(DELETE_CHAR, "delete-char", E, "delete the character under the cursor") \
    X(DOWNCASE_WORD, "downcase-word", E, "convert the word to lower case") \
    X(EOL, "eol", E, "move to the end of the line") \
    X(FORWARD_CHAR, "forward-char", E, "move the cursor one character right") \
    X(FORWARD_WORD, "forward-word", E, "move the cursor to the end of the word") \
    X(HISTORY_DOWN, "history-down", E, "go to the next history entry") \
    X(HISTORY_SEARCH, "history-search", E, "search the history") \
    X(HISTORY_UP, "history-up", E, "go to the previous history entry") \
    X(KILL_EOL, "kill-eol", E, "delete to the end of the line") \
    X(KILL_EOW, "kill-eow", E, "delete to the end of the word") \
    X(KILL_LINE, "kill-line", E, "delete the whole line") \
    X(KILL_WORD, "kill-word", E, "delete the word before the cursor") \
    X(QUOTE_CHAR, "quote-char", E, "insert the next key as it is") \
    X(TRANSPOSE_CHARS, "transpose-chars", E, "swap the characters around the cursor") \
    X(UPCASE_WORD, "upcase-word", E, "convert the word to upper case") \
    /* query */ \
    X(QUERY_APPEND, "query-append", Q, "append the results of a new query")

enum km_op {
#define KM_OP_ENUM(id, name, menus, desc) OP_##id,
    KEYMAP_FUNCTIONS(KM_OP_ENUM)
#undef KM_OP_ENUM
    OP_COUNT
};

/* ---- bindings -------------------------------------------------------- */

enum km_kind { KM_FUNCTION, KM_MACRO };

struct km_binding {
    enum km_kind kind;
    enum km_op op;          /* KM_FUNCTION */
    int *macro;             /* KM_MACRO: the keys to replay (KEYC_FUNC + op */
    size_t macro_len;       /*   stands for "<function>") */
    char *macro_text;       /* KM_MACRO: the sequence as written */
    char *desc;             /* KM_MACRO: its description, or NULL */
};

enum km_result { KM_NONE, KM_PREFIX, KM_FOUND };

struct keymap;

struct keymap *keymap_new(void);
void keymap_free(struct keymap *km);
/* Remove every binding of every menu. */
void keymap_clear(struct keymap *km);
/* A minimal set of bindings (movement, select, help, quit, ':'), used when no
 * keymap file can be found, so a user is never stuck. */
void keymap_bind_fallback(struct keymap *km);

/* Names.  The parse functions return -1 for an unknown name; function names
 * also accept mutt's aliases (tag-message, mark-as-new, redraw-screen,
 * display-headers, browse-folder).  Menu names may be given as a comma-
 * separated list to the bind command, not here. */
int keymap_menu_parse(const char *name);
const char *keymap_menu_name(enum km_menu menu);
int keymap_op_parse(const char *name);
const char *keymap_op_name(enum km_op op);
const char *keymap_op_desc(enum km_op op);
bool keymap_op_valid(enum km_menu menu, enum km_op op);

/* Parse a key sequence (syntax above) into *keys (xmalloc'd, *n >= 1).
 * allow_functions: "<function-name>" becomes KEYC_FUNC + op (macros, push).
 * max: the most keys accepted.  Returns 0, or -1 with *e (nothing
 * allocated). */
int keymap_parse_keys(const char *text, bool allow_functions, size_t max,
                      int **keys, size_t *n, struct err *e);

/* The display name of one key, written to buf (KEY_NAME_MAX bytes) and
 * returned: "j", "^D", "<Esc>", "<PageDown>", "<F5>", "\200", "<quit>".
 * Parsing the name gives the key back. */
const char *key_name(int key, char *buf);
/* The text of a sequence (xmalloc'd) such that parsing it gives the same
 * keys back: "gg", "<Esc>v", "\<x", "^Xe". */
char *keymap_keys_text(const int *keys, size_t n);

/* Bind a key sequence in a menu to a function, or to a macro (a key sequence
 * that may contain <function> references; desc may be NULL).  Fails for a
 * bad key sequence or a function not valid in the menu. */
int keymap_bind(struct keymap *km, enum km_menu menu, const char *keys, enum km_op op,
                struct err *e);
int keymap_bind_macro(struct keymap *km, enum km_menu menu, const char *keys,
                      const char *sequence, const char *desc, struct err *e);
/* Remove the binding of keys in menu (keys NULL: every binding of the menu);
 * macros_only: leave function bindings alone (the unmacro command).  Removing
 * a binding that does not exist is not an error. */
int keymap_unbind(struct keymap *km, enum km_menu menu, const char *keys, bool macros_only,
                  struct err *e);

/* Look up keys[0..n) (n >= 1) in menu, with the generic fallback described
 * above.  On KM_FOUND, *out points at the binding (valid until the keymap
 * changes); a "noop" binding is found like any other. */
enum km_result keymap_lookup(const struct keymap *km, enum km_menu menu,
                             const int *keys, size_t n, const struct km_binding **out);

/* The help screen of a menu: its own bindings (in key order), then the
 * generic bindings that apply to it, then the functions valid in it that no
 * key reaches.  noop bindings are left out. */
enum km_help_kind { KM_HELP_MENU, KM_HELP_GENERIC, KM_HELP_UNBOUND };
struct km_help {
    enum km_help_kind kind;
    char *keys;             /* key text; NULL for KM_HELP_UNBOUND */
    char *function;         /* function name, or the macro text */
    char *desc;             /* function or macro description ("" if none) */
    bool is_macro;
};
void keymap_describe(const struct keymap *km, enum km_menu menu,
                     struct km_help **out, size_t *n);
void keymap_help_free(struct km_help *h, size_t n);

/* The commands a keymap file may contain: bind, macro, unbind, unmacro.
 *   bind MENU[,MENU...] KEY FUNCTION
 *   macro MENU[,MENU...] KEY SEQUENCE [DESCRIPTION]
 *   unbind MENU[,MENU...]|* [KEY]
 *   unmacro MENU[,MENU...]|* [KEY]
 * keymap_command() returns -1 with "unknown command NAME" for anything else. */
bool keymap_is_command(const char *name);
int keymap_command(struct keymap *km, const struct rc_cmd *cmd, struct err *e);

/* Load a keymap file (rcfile syntax, no source, only the commands above) on
 * top of the current bindings.  -1 with *e only if the file cannot be read;
 * problems inside go to diag. */
int keymap_load(struct keymap *km, const char *path, struct rc_diag *diag, struct err *e);

#endif
