/*
 * thread: JWZ threading, display order, tree prefixes, collapse/expand.
 *
 * The module works on a compact array the caller fills, one struct
 * thread_input per message, and refers to messages by number (their index in
 * that array).  Message-IDs are 64-bit hashes (thread_id_hash).  Nothing is
 * allocated per message: the tree is a handful of arrays over its nodes.
 *
 * Nodes.  Nodes 0 .. n-1 are the messages; nodes n .. thread_node_count()-1
 * are dummies, which stand for a missing message that several threads
 * share.  After thread_build a dummy is always a thread root with at least
 * two children; it is never displayed: its children are shown as siblings at
 * depth 0 (with a "?" mark, or "*" when the group was made by subject).
 *
 * Building (https://www.jwz.org/doc/threading.html):
 *   - a message's parent is the last of its references that is not itself;
 *     the other references are chained in order where that adds a parent to
 *     a node that has none; a link that would close a loop is dropped;
 *   - a message's own references win over what other messages' references
 *     said about it;
 *   - references to messages not in the input make dummies; a dummy inside a
 *     thread is removed and its children take its place; a dummy root with
 *     one child is replaced by that child;
 *   - a Message-ID seen again gives the later message a node of its own; the
 *     references to that id mean the first one;
 *   - with subject_fallback, roots are then grouped by normalized subject
 *     (sort_subject_base): a root whose subject was a reply ("Re: foo")
 *     joins the root "foo" (or the group of that subject); two roots that
 *     are both non-replies or both replies are put under a new dummy, except
 *     that with strict_subject a non-reply root never joins anything.
 *
 * Display.  thread_sort orders siblings and roots with caller comparators
 * (sort_cmp_msgs fits); thread_lines lists the visible messages in display
 * order with their depth, skipping the descendants of collapsed nodes.
 * thread_display does both.  thread_prefix draws mutt's tree for a message
 * as of the last thread_sort and collapse state.
 */
#ifndef CORREO_THREAD_H
#define CORREO_THREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define THREAD_NONE UINT32_MAX

/* Most messages thread_build accepts. */
#define THREAD_MAX_MSGS (UINT32_C(1) << 30)

/* Hash of a Message-ID's bytes exactly as given (the caller strips the angle
 * brackets).  Never 0, which means "no id". */
uint64_t thread_id_hash(const char *id, size_t len);

struct thread_input {
    uint64_t id;              /* hash of the Message-ID; 0: none */
    const uint64_t *refs;     /* References in header order, then In-Reply-To
                                 unless it is already the last; hashes (0
                                 entries are skipped); NULL when n_refs is 0 */
    uint32_t n_refs;
    const char *subject;      /* UTF-8, may be NULL */
    int64_t date;             /* for the default order and for "newest" */
};

struct thread_opts {
    bool subject_fallback;    /* group roots by subject (default true) */
    bool strict_subject;      /* only reply roots join by subject (default false) */
};

#define THREAD_OPTS_INIT {.subject_fallback = true, .strict_subject = false}

struct thread_tree;

/* Thread n messages.  The tree keeps nothing of in (it may be freed) except
 * the dates.  opts NULL: THREAD_OPTS_INIT.  Returns NULL with ERR_LIMIT when
 * n exceeds THREAD_MAX_MSGS or the nodes would not fit in 32 bits. */
struct thread_tree *thread_build(const struct thread_input *in, size_t n,
                                 const struct thread_opts *opts,
                                 struct err *e);
void thread_free(struct thread_tree *t);

size_t thread_msg_count(const struct thread_tree *t);
size_t thread_node_count(const struct thread_tree *t);
bool thread_is_dummy(const struct thread_tree *t, uint32_t node);

/* Tree navigation; THREAD_NONE when there is none.  Children and roots are in
 * the order of the last thread_sort (node order before the first). */
uint32_t thread_first_root(const struct thread_tree *t);
uint32_t thread_parent(const struct thread_tree *t, uint32_t node);
uint32_t thread_first_child(const struct thread_tree *t, uint32_t node);
uint32_t thread_next_sibling(const struct thread_tree *t, uint32_t node);

/* The root of node's thread (a message or a dummy). */
uint32_t thread_root_of(const struct thread_tree *t, uint32_t node);
/* Messages in node's subtree, node included when it is a message: the "(N)"
 * of the index for thread_count(t, thread_root_of(t, msg)). */
uint32_t thread_count(const struct thread_tree *t, uint32_t node);

/* Collapse or expand node (its descendants are hidden).  Collapsing a
 * thread is thread_collapse(t, thread_root_of(t, msg), true).  A node out
 * of range is a bug and aborts. */
void thread_collapse(struct thread_tree *t, uint32_t node, bool collapsed);
bool thread_is_collapsed(const struct thread_tree *t, uint32_t node);
/* true: collapse every thread root; false: expand every node. */
void thread_collapse_all(struct thread_tree *t, bool collapsed);

/* Order of two messages: <0, 0 or >0, and 0 only when a == b. */
typedef int (*thread_cmp_fn)(uint32_t a, uint32_t b, void *arg);

struct thread_view {
    thread_cmp_fn cmp;        /* siblings; NULL: by date, then message number */
    void *cmp_arg;
    thread_cmp_fn root_cmp;   /* threads; NULL: as cmp */
    void *root_arg;
    /* false: a thread sorts as its root (a dummy as its first child), a
     * subthread as its top message.  true (mutt's "last-"): a thread or
     * subthread sorts as its newest message (greatest date, then greatest
     * number). */
    bool by_newest;
};

/* Order siblings and roots.  view NULL: all defaults. */
void thread_sort(struct thread_tree *t, const struct thread_view *view);

struct thread_line {
    uint32_t msg;             /* message number */
    uint16_t depth;           /* 0 for roots and for the children of a dummy
                                 root; saturates at UINT16_MAX */
    uint32_t hidden_count;    /* collapsed: messages hidden under this line */
};

/* Visible messages in display order, into out (room for cap lines; cap >=
 * thread_msg_count always suffices).  A collapsed dummy root shows as its
 * first child with the rest of the thread hidden.  Returns 0 and sets
 * *n_lines, or -1 with ERR_LIMIT when cap is too small (out then holds the
 * first cap lines). */
int thread_lines(const struct thread_tree *t, struct thread_line *out,
                 size_t cap, size_t *n_lines, struct err *e);

/* thread_sort then thread_lines. */
int thread_display(struct thread_tree *t, const struct thread_view *view,
                   struct thread_line *out, size_t cap, size_t *n_lines,
                   struct err *e);

/*
 * The tree prefix of message msg, mutt style:
 *
 *   root               a thread root, or a collapsed thread's line: ""
 *   ├─>child           more siblings follow        ASCII "|->"
 *   └─>last child      the last sibling            ASCII "`->"
 *   ┌─>first           first child of a dummy root ASCII ",->"
 *   │ └─>grandchild    columns: "│ " below an ancestor with more siblings
 *                      (ASCII "| "), "  " below a last one
 *
 * The horizontal stroke marks how the message got its parent: "─" (ASCII
 * "-") its references; "*" grouped by subject; "?" its parent is missing
 * (the message it answers is not in the input); "=" a duplicate
 * Message-ID placed under its first copy.
 */
#define THREAD_PREFIX_ASCII 1u

/* Bytes thread_prefix needs, NUL included. */
size_t thread_prefix_size(const struct thread_tree *t, uint32_t msg,
                          unsigned flags);
/* Returns 0, or -1 with ERR_LIMIT when size is too small (out then "" if
 * size > 0). */
int thread_prefix(const struct thread_tree *t, uint32_t msg, unsigned flags,
                  char *out, size_t size, struct err *e);

#endif
