/*
 * mbox_imap: the IMAP backend (struct mailbox_ops over mua/imap).
 *
 * A folder is a URL, imap://user@host:port/Folder or imaps://...; the
 * connection settings come from imap_settings_get() (mua/imap.h).
 *
 * Open connects and SELECTs the folder (EXAMINE when read-only), with
 * CONDSTORE when the server offers it, and opens the header cache of
 * "/scheme://user@host:port/Folder" (the cache wants an absolute name).  Cache keys are
 * "<UIDVALIDITY>.<UID>", both ten decimal digits, so key order is UID
 * order (the cache only appends on a cold load) and a new UIDVALIDITY
 * makes every old record stale; stale records are pruned after a load.
 *
 * Load:
 *   1. UID FETCH 1:* (UID FLAGS): every message, in UID order, with its
 *      flags (never cached: they always come from the server);
 *   2. each UID the header cache knows is filled from it;
 *   3. the others are fetched in batches of IMAP_FETCH_BATCH UIDs with
 *      UID FETCH (UID RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS
 *      (the fields the index needs)]), IMAP_PIPELINE commands in flight
 *      at once, then parsed, stored and cached;
 *   4. slots the server gave nothing for are dropped.
 *
 * The store's name of a message is its UID in decimal (its key too).
 *
 * Flags: \Seen, \Answered, \Flagged, \Draft, \Deleted (MSG_TRASHED) and
 * $Forwarded (MSG_PASSED) are the server's; \Recent is MSG_NEW.  A flag
 * change is UID STORE +FLAGS.SILENT / -FLAGS.SILENT at once.  Deletion is
 * deferred to sync: UID STORE +FLAGS.SILENT (\Deleted) and UID EXPUNGE of
 * exactly those messages (UIDPLUS), else EXPUNGE.  Move is UID MOVE when
 * offered, else UID COPY, \Deleted and UID EXPUNGE (without UIDPLUS the
 * original is marked for deletion and goes at the next sync).  Append is
 * APPEND followed by a check that brings the new message into the store.
 *
 * Folder record.  The cache also holds, under FOLDER_KEY, the folder's
 * UIDVALIDITY, the HIGHESTMODSEQ the store was in step with and every UID
 * with its server flags (see folder_save).  A cache without it (written
 * before it existed) is emptied once.  On a server with QRESYNC, open
 * sends ENABLE QRESYNC and SELECT (QRESYNC (uidvalidity modseq)); load
 * then takes the UIDs and flags from the record, drops the VANISHED ones,
 * applies what changed (the SELECT's FETCH data and UID FETCH 1:* (FLAGS)
 * (CHANGEDSINCE modseq VANISHED)), fetches headers only for new UIDs, and
 * falls back to a full load when the count does not match EXISTS.  The
 * record is rewritten (not synced) at close when something changed.
 *
 * Check.  With an IDLE pending, check polls the socket for IDLE_POLL_MS
 * and returns at once when the server said nothing; otherwise DONE ends
 * the IDLE (or NOOP is sent), then a refresh: with CONDSTORE and a known
 * modseq only UID FETCH 1:* (UID FLAGS) (CHANGEDSINCE m [VANISHED]) --
 * new UIDs added, vanished marked gone, flags applied -- and every UID
 * when the count does not come out as EXISTS; without CONDSTORE every UID
 * and its flags.  Then IDLE again when the server has it.  Every other
 * operation ends a pending IDLE with DONE before its command.
 *
 * Reconnecting.  A command that fails because the connection dropped
 * (EOF, reset, timeout, BYE: imap_dropped) makes the next step connect
 * again with the same URL and settings (RECONNECT_TRIES attempts, 0, 250
 * ms and 1 s apart), SELECT, and resynchronise by UID with the refresh
 * above from the store's modseq: the store keeps its records.  A new
 * UIDVALIDITY reloads everything instead (a warning says so; an operation
 * on a message number fails with ERR_NOTFOUND, the numbers having
 * changed).  Flag changes are pending until the server confirms them:
 * the record shows them at once, a resync puts them back over the
 * server's flags and sends them again (STORE +FLAGS/-FLAGS is
 * idempotent).  FETCH and STORE are retried once after a reconnect; UID
 * MOVE too, unless the resync shows the message already gone; COPY,
 * APPEND and EXPUNGE are never sent twice: a NOOP first finds a
 * connection that died while idle (a killed server process, a suspend).
 */
#include "mailbox.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <libetpan/libetpan.h>

#include "hcache.h"
#include "imap.h"
#include "message.h"
#include "msg.h"
#include "xalloc.h"

#define IMAP_FETCH_BATCH 500
#define IMAP_PIPELINE 4
#define IMAP_HEADER_MAX ((size_t)1 << 20)
#define IMAP_KEY_LEN 21                    /* "VVVVVVVVVV.UUUUUUUUUU" */
#define FOLDER_KEY "!folder"              /* sorts before every "<UIDVALIDITY>.<UID>" */
#define FOLDER_MAGIC "correo imap folder"
#define FOLDER_SCHEMA 2                    /* 1: no folder record (a cache of then is rebuilt) */
#define RECONNECT_TRIES 3
#define IDLE_POLL_MS 200                   /* how long check() waits on a pending IDLE */
#define IDLE_RENEW_S (25 * 60)             /* servers end an IDLE after 30 minutes */
#define SERVER_FLAGS (MSG_SEEN | MSG_REPLIED | MSG_FLAGGED | MSG_DRAFT | MSG_TRASHED | MSG_PASSED)

static const char *const header_fields[] = {
    "DATE", "FROM", "TO", "CC", "SUBJECT", "MESSAGE-ID", "IN-REPLY-TO", "REFERENCES",
    "LIST-ID", "X-LABEL",
};

struct uid_list;

struct ib_priv {
    struct imap_url url;
    struct imap_conn *c;
    char *cache_id;              /* what the header cache is keyed by */
    struct hcache *hc;           /* NULL: running without a cache */
    uint32_t uidvalidity;
    struct hcache_recbuf rb;
    struct hcache_refs rf;
    struct msg_limits lim;
    struct buf xl;
    /* during a load: the UIDs that must stay in the cache */
    const uint32_t *keep_uids;
    size_t keep_n;
    unsigned open_flags;
    bool qresync;                /* ENABLE QRESYNC done on this connection */
    uint64_t modseq;             /* HIGHESTMODSEQ the store is in step with; 0: unknown */
    bool idling;                 /* "TAG IDLE" sent, DONE not yet */
    int idle_tag;
    time_t idle_since;
    struct pending *pend;        /* flag changes the server has not confirmed */
    size_t npend, cappend;
    unsigned reconnects, reloads;
    bool used_qresync;
    uint64_t tags_before;        /* commands of the connections before this one */
    bool reloaded;               /* a resync found a new UIDVALIDITY and reloaded */
    bool dirty;                  /* the folder record no longer matches the store */
    /* what a QRESYNC SELECT at open said, for load */
    bool qr_have;
    struct uid_list *qr_known;   /* the folder record's UIDs and flags */
    struct uid_list *qr_changed; /* FETCH results of the SELECT */
    struct mailimap_set *qr_vanished;
    uint64_t qr_ms;              /* the folder record's modseq */
};

/* A flag change not yet confirmed: server bits to add and to remove. */
struct pending {
    uint32_t uid;
    unsigned add, del;
};

static struct ib_priv *priv(struct mailbox *mb)
{
    return mb->priv;
}

/* One message as UID FETCH gave it. */
struct uid_flags {
    uint32_t uid;
    unsigned flags;
};

struct uid_list {
    struct uid_flags *v;
    size_t n, cap;
};

static void uid_list_free(struct uid_list *l)
{
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* ---- helpers ---------------------------------------------------------------- */

static void warn(struct mailbox *mb, const struct err *w, const char *what)
{
    if (mb->has_warning)
        return;
    mb->warning = *w;
    err_prefix(&mb->warning, "%s", what);
    mb->has_warning = true;
}

static void drop_cache(struct mailbox *mb, const struct err *w)
{
    struct ib_priv *p = priv(mb);

    warn(mb, w, "running without the header cache");
    hcache_close(p->hc);
    p->hc = NULL;
}

static size_t cache_key(const struct ib_priv *p, uint32_t uid, char key[IMAP_KEY_LEN + 1])
{
    return (size_t)snprintf(key, IMAP_KEY_LEN + 1, "%010u.%010u", p->uidvalidity, uid);
}

static void cache_put(struct mailbox *mb, uint32_t uid, const struct hcache_rec *rec)
{
    struct ib_priv *p = priv(mb);
    char key[IMAP_KEY_LEN + 1];
    struct err w;

    if (p->hc == NULL)
        return;
    if (hcache_put(p->hc, key, cache_key(p, uid, key), rec, &w) != 0 && w.code != ERR_INVAL)
        drop_cache(mb, &w);
}

static void cache_del(struct mailbox *mb, uint32_t uid)
{
    struct ib_priv *p = priv(mb);
    char key[IMAP_KEY_LEN + 1];
    struct err w;

    if (p->hc == NULL)
        return;
    if (hcache_del(p->hc, key, cache_key(p, uid, key), &w) != 0 && w.code != ERR_INVAL)
        drop_cache(mb, &w);
}

static void cache_commit(struct mailbox *mb)
{
    struct ib_priv *p = priv(mb);
    struct err w;

    if (p->hc != NULL && hcache_commit(p->hc, &w) != 0)
        drop_cache(mb, &w);
}

static uint32_t uid_of(const struct store *st, uint32_t idx)
{
    const char *s = store_str(st, store_get(st, idx)->name);
    unsigned long v = strtoul(s, NULL, 10);

    return v > UINT32_MAX ? 0 : (uint32_t)v;
}

static int not_connected(struct mailbox *mb, struct err *e)
{
    err_set(e, ERR_NET, "%s: the connection to the server is gone; reopen the folder",
            mb->name);
    err_scope(e, ERR_SCOPE_ACCOUNT, true);
    return -1;
}

static int refuse_readonly(struct mailbox *mb, struct err *e)
{
    err_set(e, ERR_UNSUPPORTED, "%s is read-only", mb->name);
    err_scope(e, ERR_SCOPE_BOX, false);
    return -1;
}

static int check_msg(struct mailbox *mb, uint32_t idx, struct err *e)
{
    const struct store_msg *m;

    if (idx >= store_count(&mb->store))
        return err_set(e, ERR_NOTFOUND, "no message %u", idx);
    m = store_get(&mb->store, idx);
    if (!(m->bits & STORE_B_FILLED) || (m->bits & STORE_B_GONE))
        return err_set(e, ERR_NOTFOUND, "message %u is gone", idx);
    if (!imap_usable(priv(mb)->c))
        return not_connected(mb, e);
    return 0;
}

/* ---- flags ------------------------------------------------------------------- */

static unsigned flag_of(const struct mailimap_flag *f)
{
    switch (f->fl_type) {
    case MAILIMAP_FLAG_ANSWERED:
        return MSG_REPLIED;
    case MAILIMAP_FLAG_FLAGGED:
        return MSG_FLAGGED;
    case MAILIMAP_FLAG_DELETED:
        return MSG_TRASHED;
    case MAILIMAP_FLAG_SEEN:
        return MSG_SEEN;
    case MAILIMAP_FLAG_DRAFT:
        return MSG_DRAFT;
    case MAILIMAP_FLAG_KEYWORD:
        if (f->fl_data.fl_keyword != NULL && strcasecmp(f->fl_data.fl_keyword, "$Forwarded") == 0)
            return MSG_PASSED;
        return 0;
    default:
        return 0;
    }
}

static unsigned flags_of(const struct mailimap_msg_att_dynamic *dyn)
{
    unsigned f = 0;

    if (dyn == NULL || dyn->att_list == NULL)
        return 0;
    for (clistiter *it = clist_begin(dyn->att_list); it != NULL; it = clist_next(it)) {
        const struct mailimap_flag_fetch *ff = clist_content(it);

        if (ff->fl_type == MAILIMAP_FLAG_FETCH_RECENT)
            f |= MSG_NEW;
        else if (ff->fl_flag != NULL)
            f |= flag_of(ff->fl_flag);
    }
    return f;
}

/* A flag list for the server flags in bits (NULL when there are none). */
static struct mailimap_flag_list *flag_list_of(unsigned bits)
{
    struct mailimap_flag_list *fl;

    if (!(bits & SERVER_FLAGS))
        return NULL;
    fl = mailimap_flag_list_new_empty();
    if (fl == NULL)
        die("out of memory");
    if (bits & MSG_SEEN)
        mailimap_flag_list_add(fl, mailimap_flag_new_seen());
    if (bits & MSG_REPLIED)
        mailimap_flag_list_add(fl, mailimap_flag_new_answered());
    if (bits & MSG_FLAGGED)
        mailimap_flag_list_add(fl, mailimap_flag_new_flagged());
    if (bits & MSG_DRAFT)
        mailimap_flag_list_add(fl, mailimap_flag_new_draft());
    if (bits & MSG_TRASHED)
        mailimap_flag_list_add(fl, mailimap_flag_new_deleted());
    if (bits & MSG_PASSED)
        mailimap_flag_list_add(fl, mailimap_flag_new_flag_keyword(xstrdup("$Forwarded")));
    return fl;
}

/* UID STORE set +FLAGS.SILENT / -FLAGS.SILENT (add: true / false). */
static int store_flags(struct mailbox *mb, struct mailimap_set *set, unsigned bits, bool add,
                       struct err *e)
{
    struct ib_priv *p = priv(mb);
    struct mailimap_flag_list *fl = flag_list_of(bits);
    struct mailimap_store_att_flags *sa;
    int r;

    if (fl == NULL)
        return 0;
    sa = add ? mailimap_store_att_flags_new_add_flags_silent(fl)
             : mailimap_store_att_flags_new_remove_flags_silent(fl);
    if (sa == NULL)
        die("out of memory");
    r = mailimap_uid_store(imap_session(p->c), set, sa);
    mailimap_store_att_flags_free(sa);
    return imap_check(p->c, r, "UID STORE", e);
}

static struct mailimap_set *set_single(uint32_t uid)
{
    struct mailimap_set *s = mailimap_set_new_single(uid);

    if (s == NULL)
        die("out of memory");
    return s;
}

/* ---- fetching ---------------------------------------------------------------- */

/* UID FETCH 1:* (UID FLAGS) into l, sorted by UID. */
static int cmp_uid(const void *a, const void *b)
{
    uint32_t x = ((const struct uid_flags *)a)->uid, y = ((const struct uid_flags *)b)->uid;

    return (x > y) - (x < y);
}

/* Add the UID and FLAGS of every FETCH result in res to l (unsorted);
 * *maxmod (may be NULL) gets the highest MODSEQ seen. */
static void collect_flags(clist *res, struct uid_list *l, uint64_t *maxmod)
{
    for (clistiter *it = clist_begin(res); it != NULL; it = clist_next(it)) {
        struct mailimap_msg_att *att = clist_content(it);
        struct uid_flags uf = {0, 0};

        for (clistiter *j = clist_begin(att->att_list); j != NULL; j = clist_next(j)) {
            struct mailimap_msg_att_item *item = clist_content(j);

            if (item->att_type == MAILIMAP_MSG_ATT_ITEM_DYNAMIC) {
                uf.flags |= flags_of(item->att_data.att_dyn);
            } else if (item->att_type == MAILIMAP_MSG_ATT_ITEM_STATIC &&
                       item->att_data.att_static->att_type == MAILIMAP_MSG_ATT_UID) {
                uf.uid = item->att_data.att_static->att_data.att_uid;
            } else if (item->att_type == MAILIMAP_MSG_ATT_ITEM_EXTENSION && maxmod != NULL &&
                       item->att_data.att_extension_data != NULL &&
                       item->att_data.att_extension_data->ext_extension->ext_id ==
                           MAILIMAP_EXTENSION_CONDSTORE &&
                       item->att_data.att_extension_data->ext_type ==
                           MAILIMAP_CONDSTORE_TYPE_FETCH_DATA &&
                       item->att_data.att_extension_data->ext_data != NULL) {
                const struct mailimap_condstore_fetch_mod_resp *mr =
                    item->att_data.att_extension_data->ext_data;

                if (mr->cs_modseq_value > *maxmod)
                    *maxmod = mr->cs_modseq_value;
            }
        }
        if (uf.uid == 0)
            continue;
        if (l->n == l->cap) {
            l->cap = l->cap ? l->cap * 2 : 256;
            l->v = xreallocarray(l->v, l->cap, sizeof *l->v);
        }
        l->v[l->n++] = uf;
    }
}

/* Sort l by UID; a server that repeats a UID: keep the first. */
static void sort_uids(struct uid_list *l)
{
    if (l->n == 0)
        return;
    qsort(l->v, l->n, sizeof *l->v, cmp_uid);
    if (l->n > 1) {
        size_t k = 1;

        for (size_t i = 1; i < l->n; i++)
            if (l->v[i].uid != l->v[k - 1].uid)
                l->v[k++] = l->v[i];
        l->n = k;
    }
}

static int fetch_all_flags(struct mailbox *mb, struct uid_list *l, struct err *e)
{
    struct ib_priv *p = priv(mb);
    mailimap *s = imap_session(p->c);
    struct mailimap_fetch_type *ft;
    struct mailimap_set *set;
    clist *res = NULL;
    int r;

    memset(l, 0, sizeof *l);
    if (s->imap_selection_info != NULL && s->imap_selection_info->sel_has_exists &&
        s->imap_selection_info->sel_exists == 0)
        return 0;
    ft = mailimap_fetch_type_new_fetch_att_list_empty();
    set = mailimap_set_new_interval(1, 0);
    if (ft == NULL || set == NULL)
        die("out of memory");
    mailimap_fetch_type_new_fetch_att_list_add(ft, mailimap_fetch_att_new_uid());
    mailimap_fetch_type_new_fetch_att_list_add(ft, mailimap_fetch_att_new_flags());
    r = mailimap_uid_fetch(s, set, ft, &res);
    mailimap_fetch_type_free(ft);
    mailimap_set_free(set);
    if (imap_check(p->c, r, "UID FETCH (FLAGS)", e) != 0)
        return -1;
    collect_flags(res, l, NULL);
    mailimap_fetch_list_free(res);
    sort_uids(l);
    return 0;
}

static int64_t internal_time(const struct mailimap_date_time *d)
{
    struct tm tm;
    int z, minutes;
    time_t t;

    if (d == NULL)
        return 0;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = d->dt_year - 1900;
    tm.tm_mon = d->dt_month - 1;
    tm.tm_mday = d->dt_day;
    tm.tm_hour = d->dt_hour;
    tm.tm_min = d->dt_min;
    tm.tm_sec = d->dt_sec;
    t = timegm(&tm);
    if (t == (time_t)-1)
        return 0;
    z = d->dt_zone < 0 ? -d->dt_zone : d->dt_zone;
    minutes = (z / 100) * 60 + z % 100;
    return (int64_t)t - (int64_t)(d->dt_zone < 0 ? -minutes : minutes) * 60;
}

/* Position of uid among the store slots [0, n) that a load added in UID
 * order, or STORE_NONE. */
static uint32_t find_sorted(const uint32_t *uids, size_t n, uint32_t uid)
{
    size_t lo = 0, hi = n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (uids[mid] == uid)
            return (uint32_t)mid;
        if (uids[mid] < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return STORE_NONE;
}

/* Fill slot idx from a fetched header block. */
static int fill_from_header(struct mailbox *mb, uint32_t idx, uint32_t uid, const char *hdr,
                            size_t len, uint64_t size, int64_t received, struct err *e)
{
    struct ib_priv *p = priv(mb);
    struct store *st = &mb->store;
    struct message *m = NULL;
    struct store_new file;
    struct hcache_rec rec;
    const char *xl = NULL;
    struct err pe;
    int tz = 0, rc;

    if (message_parse_headers(hdr != NULL ? hdr : "", len, &p->lim, &m, &pe) != 0) {
        /* Keep a record from what is known, and say so. */
        warn(mb, &pe, "some headers could not be parsed");
        memset(&file, 0, sizeof file);
        file.flags = store_get(st, idx)->flags;
        file.size = size;
        file.received = received;
        return store_fill(st, idx, &file, e);
    }
    if (m->env.date_valid)
        (void)mailbox_date_tz(m->env.date_text, &tz);
    if (hdr != NULL && mailbox_header_field(hdr, len, "X-Label", &p->xl))
        xl = buf_cstr(&p->xl);
    memset(&file, 0, sizeof file);
    file.flags = store_get(st, idx)->flags;
    file.size = size;
    file.received = received;
    file.tz = tz;
    rc = store_fill_envelope(st, idx, &file, &m->env, e);
    if (rc == 0) {
        hcache_rec_from_envelope(&rec, &m->env, tz, size, received, xl, &p->rb);
        cache_put(mb, uid, &rec);
        mb->stats.cache_misses++;
    }
    message_free(m);
    return rc;
}

/* "UID FETCH <set> (UID RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS
 * (...)])" for uids[0..n) (sorted), runs of consecutive UIDs as ranges. */
static void header_fetch_cmd(struct buf *cmd, const uint32_t *uids, size_t n)
{
    buf_reset(cmd);
    if (buf_puts(cmd, "UID FETCH ") != 0)
        die("mbox_imap: unbounded buffer refused an append");
    for (size_t i = 0; i < n;) {
        size_t j = i;
        int rc;

        while (j + 1 < n && uids[j + 1] == uids[j] + 1)
            j++;
        if (j == i)
            rc = buf_printf(cmd, "%s%u", i > 0 ? "," : "", uids[i]);
        else
            rc = buf_printf(cmd, "%s%u:%u", i > 0 ? "," : "", uids[i], uids[j]);
        if (rc != 0)
            die("mbox_imap: unbounded buffer refused an append");
        i = j + 1;
    }
    if (buf_puts(cmd, " (UID RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS (") != 0)
        die("mbox_imap: unbounded buffer refused an append");
    for (size_t i = 0; i < ARRAY_LEN(header_fields); i++)
        if (buf_printf(cmd, "%s%s", i > 0 ? " " : "", header_fields[i]) != 0)
            die("mbox_imap: unbounded buffer refused an append");
    if (buf_puts(cmd, ")])\r\n") != 0)
        die("mbox_imap: unbounded buffer refused an append");
}

/* Fill the slots of the FETCH results in res that answer for uids[0..n)
 * (slot_of[i] is the store slot of uids[i]); anything else is ignored. */
static int apply_headers(struct mailbox *mb, clist *res, const uint32_t *uids,
                         const uint32_t *slot_of, size_t n, struct err *e)
{
    int rc = 0;

    for (clistiter *it = clist_begin(res); it != NULL && rc == 0; it = clist_next(it)) {
        struct mailimap_msg_att *att = clist_content(it);
        uint32_t uid = 0, size = 0, pos;
        int64_t received = 0;
        const char *hdr = NULL;
        size_t hlen = 0;

        for (clistiter *j = clist_begin(att->att_list); j != NULL; j = clist_next(j)) {
            struct mailimap_msg_att_item *item = clist_content(j);
            struct mailimap_msg_att_static *sa;

            if (item->att_type != MAILIMAP_MSG_ATT_ITEM_STATIC)
                continue;
            sa = item->att_data.att_static;
            switch (sa->att_type) {
            case MAILIMAP_MSG_ATT_UID:
                uid = sa->att_data.att_uid;
                break;
            case MAILIMAP_MSG_ATT_RFC822_SIZE:
                size = sa->att_data.att_rfc822_size;
                break;
            case MAILIMAP_MSG_ATT_INTERNALDATE:
                received = internal_time(sa->att_data.att_internal_date);
                break;
            case MAILIMAP_MSG_ATT_BODY_SECTION:
                if (sa->att_data.att_body_section != NULL &&
                    sa->att_data.att_body_section->sec_body_part != NULL) {
                    hdr = sa->att_data.att_body_section->sec_body_part;
                    hlen = sa->att_data.att_body_section->sec_length;
                    if (hlen > IMAP_HEADER_MAX)
                        hlen = IMAP_HEADER_MAX;   /* the parser looks no further */
                }
                break;
            default:
                break;
            }
        }
        pos = uid != 0 ? find_sorted(uids, n, uid) : STORE_NONE;
        if (pos == STORE_NONE)
            continue;   /* not asked for (or an unsolicited FETCH) */
        if (store_get(&mb->store, slot_of[pos])->bits & STORE_B_FILLED)
            continue;   /* the same UID twice */
        rc = fill_from_header(mb, slot_of[pos], uid, hdr, hlen, size, received, e);
    }
    return rc;
}

/* One UID FETCH in flight. */
struct inflight {
    size_t n;
    int tag;
};

/* Read the reply to the command tagged t: its FETCH results in *res (free
 * with mailimap_fetch_list_free; may be NULL). */
static int read_reply(mailimap *s, int t, clist **res)
{
    struct mailimap_response *resp = NULL;
    int saved = s->imap_tag, r, ok;

    *res = NULL;
    s->imap_tag = t;   /* libetpan checks the tag against this */
    if (mailimap_read_line(s) == NULL)
        r = MAILIMAP_ERROR_STREAM;
    else
        r = mailimap_parse_response(s, &resp);
    s->imap_tag = saved;
    if (r != MAILIMAP_NO_ERROR)
        return r;
    if (s->imap_response_info != NULL) {
        *res = s->imap_response_info->rsp_fetch_list;
        s->imap_response_info->rsp_fetch_list = NULL;
    }
    ok = resp->rsp_resp_done->rsp_type == MAILIMAP_RESP_DONE_TYPE_TAGGED &&
         resp->rsp_resp_done->rsp_data.rsp_tagged->rsp_cond_state->rsp_type ==
             MAILIMAP_RESP_COND_STATE_OK;
    mailimap_response_free(resp);
    return ok ? MAILIMAP_NO_ERROR : MAILIMAP_ERROR_UID_FETCH;
}

/*
 * Fill the slots (store slots whose UIDs are uids[0..n), in UID order)
 * from the server: UID FETCH commands of IMAP_FETCH_BATCH UIDs, up to
 * IMAP_PIPELINE of them in flight, so the server never waits for us
 * between batches.  Progress every MAILBOX_PROGRESS_STEP messages.
 */
static int fetch_missing(struct mailbox *mb, const uint32_t *uids, const uint32_t *slots,
                         size_t n, mailbox_progress_fn progress, void *ctx, struct err *e)
{
    struct ib_priv *p = priv(mb);
    mailimap *s = imap_session(p->c);
    struct inflight q[IMAP_PIPELINE];
    size_t head = 0, nq = 0, sent = 0, done = 0, next_report = MAILBOX_PROGRESS_STEP;
    struct buf cmd = BUF_INIT;
    int rc = 0;

    while ((done < n || nq > 0) && rc == 0) {
        int r;
        clist *res = NULL;
        struct inflight it;

        while (nq < IMAP_PIPELINE && sent < n && rc == 0) {
            size_t k = n - sent < IMAP_FETCH_BATCH ? n - sent : IMAP_FETCH_BATCH;
            struct inflight *slot = &q[(head + nq) % IMAP_PIPELINE];

            header_fetch_cmd(&cmd, uids + sent, k);
            r = mailimap_send_current_tag(s);
            if (r == MAILIMAP_NO_ERROR &&
                mailstream_write(s->imap_stream, cmd.data, cmd.len) != (ssize_t)cmd.len)
                r = MAILIMAP_ERROR_STREAM;
            if (r != MAILIMAP_NO_ERROR) {
                imap_mark_broken(p->c);
                rc = imap_check(p->c, r, "UID FETCH (headers)", e);
                break;
            }
            slot->n = k;
            slot->tag = s->imap_tag;
            sent += k;
            nq++;
        }
        if (rc != 0)
            break;
        if (mailstream_flush(s->imap_stream) != 0) {
            rc = imap_check(p->c, MAILIMAP_ERROR_STREAM, "UID FETCH (headers)", e);
            break;
        }
        it = q[head];
        head = (head + 1) % IMAP_PIPELINE;
        nq--;
        r = read_reply(s, it.tag, &res);
        /* Untagged FETCH data is not tied to a command: a server may send
         * the data of several pipelined commands before the first tagged
         * reply, so results are matched against every UID asked for. */
        if (r == MAILIMAP_NO_ERROR)
            rc = apply_headers(mb, res, uids, slots, n, e);
        else
            rc = imap_check(p->c, r, "UID FETCH (headers)", e);
        if (res != NULL)
            mailimap_fetch_list_free(res);
        done += it.n;
        if (rc == 0 && progress != NULL && done >= next_report && done < n) {
            progress(ctx, done, n);
            next_report = (done / MAILBOX_PROGRESS_STEP + 1) * MAILBOX_PROGRESS_STEP;
        }
    }
    /* After a failure, read the replies still due so the connection stays
     * in step; when that fails too it is given up. */
    while (nq > 0 && imap_usable(p->c)) {
        clist *res = NULL;
        struct err ignored;
        int r = read_reply(s, q[head].tag, &res);

        if (res != NULL && r == MAILIMAP_NO_ERROR)
            (void)apply_headers(mb, res, uids, slots, n, &ignored);
        if (res != NULL)
            mailimap_fetch_list_free(res);
        if (r == MAILIMAP_ERROR_STREAM || r == MAILIMAP_ERROR_PARSE ||
            r == MAILIMAP_ERROR_PROTOCOL || r == MAILIMAP_ERROR_FATAL)
            imap_mark_broken(p->c);
        head = (head + 1) % IMAP_PIPELINE;
        nq--;
    }
    buf_free(&cmd);
    return rc;
}

/* Slot idx from the header cache, if it has the UID. */
static bool fill_from_cache(struct mailbox *mb, uint32_t idx, uint32_t uid, struct err *e,
                            int *rc)
{
    struct ib_priv *p = priv(mb);
    char key[IMAP_KEY_LEN + 1];
    struct hcache_rec rec;
    struct store_new in;

    *rc = 0;
    if (p->hc == NULL || hcache_get(p->hc, key, cache_key(p, uid, key), &rec, NULL) != 0)
        return false;
    memset(&in, 0, sizeof in);
    in.flags = store_get(&mb->store, idx)->flags;
    hcache_rec_to_store(&rec, &in, &p->rf);
    *rc = store_fill(&mb->store, idx, &in, e);
    if (*rc == 0)
        mb->stats.cache_hits++;
    return true;
}

/* Add a slot for each entry of l[0..n) and fill it: from the cache, else
 * from the server. */
static int add_messages(struct mailbox *mb, const struct uid_flags *l, size_t n,
                        mailbox_progress_fn progress, void *ctx, struct err *e)
{
    struct store *st = &mb->store;
    uint32_t *uids = XNEWARRAY(uint32_t, n > 0 ? n : 1);
    uint32_t *slots = XNEWARRAY(uint32_t, n > 0 ? n : 1);
    size_t missing = 0;
    int rc = 0;

    store_reserve(st, n);
    for (size_t i = 0; i < n && rc == 0; i++) {
        char name[16];
        int len = snprintf(name, sizeof name, "%u", l[i].uid);
        uint32_t idx;

        rc = store_add_name(st, name, (size_t)len, 0, l[i].flags, 0, &idx, e);
        if (rc != 0)
            break;
        if (fill_from_cache(mb, idx, l[i].uid, e, &rc))
            continue;
        uids[missing] = l[i].uid;
        slots[missing] = idx;
        missing++;
    }
    if (rc == 0 && missing > 0)
        rc = fetch_missing(mb, uids, slots, missing, progress, ctx, e);
    if (rc == 0 && progress != NULL)
        progress(ctx, missing, missing);
    free(uids);
    free(slots);
    return rc;
}

static bool keep_key(void *ctx, const char *key, size_t key_len)
{
    struct ib_priv *p = ctx;
    char want[IMAP_KEY_LEN + 1];
    unsigned long uid;
    char *end;

    if (key_len == strlen(FOLDER_KEY) && memcmp(key, FOLDER_KEY, key_len) == 0)
        return true;
    if (key_len != IMAP_KEY_LEN)
        return false;
    snprintf(want, sizeof want, "%010u.", p->uidvalidity);
    if (memcmp(key, want, 11) != 0)
        return false;
    memcpy(want, key, IMAP_KEY_LEN);
    want[IMAP_KEY_LEN] = '\0';
    uid = strtoul(want + 11, &end, 10);
    if (*end != '\0' || uid == 0 || uid > UINT32_MAX)
        return false;
    return find_sorted(p->keep_uids, p->keep_n, (uint32_t)uid) != STORE_NONE;
}

static bool keep_nothing(void *ctx, const char *key, size_t key_len)
{
    (void)ctx;
    (void)key;
    (void)key_len;
    return false;
}

/* ---- UID ranges (VANISHED) ------------------------------------------------------- */

struct uid_range {
    uint32_t first, last;
};

struct ranges {
    struct uid_range *v;
    size_t n, cap;
};

static void ranges_add_set(struct ranges *r, const struct mailimap_set *set)
{
    if (set == NULL || set->set_list == NULL)
        return;
    for (clistiter *it = clist_begin(set->set_list); it != NULL; it = clist_next(it)) {
        const struct mailimap_set_item *item = clist_content(it);
        uint32_t a = item->set_first, b = item->set_last;

        if (a == 0)
            a = UINT32_MAX;
        if (b == 0)
            b = UINT32_MAX;
        if (a > b) {
            uint32_t t = a;

            a = b;
            b = t;
        }
        if (r->n == r->cap) {
            r->cap = r->cap ? r->cap * 2 : 8;
            r->v = xreallocarray(r->v, r->cap, sizeof *r->v);
        }
        r->v[r->n].first = a;
        r->v[r->n].last = b;
        r->n++;
    }
}

/* Every VANISHED response the session holds since its last command. */
static void ranges_add_session(struct ranges *r, mailimap *s)
{
    if (s->imap_response_info == NULL || s->imap_response_info->rsp_extension_list == NULL)
        return;
    for (clistiter *it = clist_begin(s->imap_response_info->rsp_extension_list); it != NULL;
         it = clist_next(it)) {
        const struct mailimap_extension_data *d = clist_content(it);

        if (d->ext_extension->ext_id == MAILIMAP_EXTENSION_QRESYNC &&
            d->ext_type == MAILIMAP_QRESYNC_TYPE_VANISHED && d->ext_data != NULL)
            ranges_add_set(r, ((const struct mailimap_qresync_vanished *)d->ext_data)
                                  ->qr_known_uids);
    }
}

static bool ranges_has(const struct ranges *r, uint32_t uid)
{
    for (size_t i = 0; i < r->n; i++)
        if (uid >= r->v[i].first && uid <= r->v[i].last)
            return true;
    return false;
}

static void ranges_free(struct ranges *r)
{
    free(r->v);
    memset(r, 0, sizeof *r);
}

/* ---- the folder record ----------------------------------------------------------- */

/*
 * The cache's folder record, key FOLDER_KEY, is an hcache record whose
 * fields mean: tz = FOLDER_SCHEMA, date = UIDVALIDITY, size = the
 * HIGHESTMODSEQ the list is in step with (0: unknown), subject =
 * FOLDER_MAGIC, x_label = the UIDs and server flags of the folder's
 * messages: per message a varint of the UID's distance from the one
 * before, then one byte of flags (enum msg_flag server bits).
 */

static void put_varint32(struct buf *b, uint32_t v)
{
    unsigned char t[5];
    size_t n = 0;

    do {
        t[n] = (unsigned char)(v & 0x7f);
        v >>= 7;
        if (v != 0)
            t[n] |= 0x80;
        n++;
    } while (v != 0);
    if (buf_append(b, t, n) != 0)
        die("mbox_imap: unbounded buffer refused an append");
}

static bool get_varint32(const unsigned char *p, size_t len, size_t *pos, uint32_t *out)
{
    uint64_t v = 0;

    for (unsigned shift = 0; shift < 35; shift += 7) {
        if (*pos >= len)
            return false;
        v |= (uint64_t)(p[*pos] & 0x7f) << shift;
        if (!(p[(*pos)++] & 0x80)) {
            if (v > UINT32_MAX)
                return false;
            *out = (uint32_t)v;
            return true;
        }
    }
    return false;
}

static size_t live_uids(struct mailbox *mb, struct uid_list *l)
{
    struct store *st = &mb->store;

    memset(l, 0, sizeof *l);
    l->cap = store_count(st) > 0 ? store_count(st) : 1;
    l->v = XNEWARRAY(struct uid_flags, l->cap);
    for (uint32_t k = 0; k < store_count(st); k++) {
        const struct store_msg *m = store_get(st, k);

        if ((m->bits & STORE_B_FILLED) && !(m->bits & STORE_B_GONE)) {
            l->v[l->n].uid = uid_of(st, k);
            l->v[l->n].flags = m->flags & SERVER_FLAGS;
            l->n++;
        }
    }
    sort_uids(l);
    return l->n;
}

/* Write the folder record from the store (not committed). */
static void folder_save(struct mailbox *mb)
{
    struct ib_priv *p = priv(mb);
    struct buf blob = BUF_INIT;
    struct hcache_rec rec;
    struct uid_list l;
    uint32_t prev = 0;
    struct err w;

    if (p->hc == NULL)
        return;
    live_uids(mb, &l);
    for (size_t i = 0; i < l.n; i++) {
        unsigned char f = (unsigned char)(l.v[i].flags & SERVER_FLAGS);

        put_varint32(&blob, l.v[i].uid - prev);
        if (buf_append(&blob, &f, 1) != 0)
            die("mbox_imap: unbounded buffer refused an append");
        prev = l.v[i].uid;
    }
    memset(&rec, 0, sizeof rec);
    rec.tz = FOLDER_SCHEMA;
    rec.date = (int64_t)p->uidvalidity;
    /* Flags the server has not confirmed are not what it holds: without a
     * modseq the next open refreshes every flag. */
    rec.size = p->npend > 0 ? 0 : p->modseq;
    rec.subject.p = FOLDER_MAGIC;
    rec.subject.n = strlen(FOLDER_MAGIC);
    rec.x_label.p = blob.data != NULL ? blob.data : "";
    rec.x_label.n = blob.len;
    if (hcache_put(p->hc, FOLDER_KEY, strlen(FOLDER_KEY), &rec, &w) != 0)
        drop_cache(mb, &w);
    buf_free(&blob);
    uid_list_free(&l);
}

/* The folder record: 1 (l filled, sorted), 0 none, -1 of another schema
 * or damaged. */
static int folder_read(struct mailbox *mb, struct uid_list *l, uint32_t *uv, uint64_t *ms)
{
    struct ib_priv *p = priv(mb);
    struct hcache_rec rec;
    const unsigned char *b;
    size_t pos = 0;
    uint32_t uid = 0;
    struct err w;

    memset(l, 0, sizeof *l);
    if (p->hc == NULL)
        return 0;
    if (hcache_get(p->hc, FOLDER_KEY, strlen(FOLDER_KEY), &rec, &w) != 0)
        return w.code == ERR_NOTFOUND ? 0 : -1;
    if (rec.tz != FOLDER_SCHEMA || rec.subject.p == NULL ||
        rec.subject.n != strlen(FOLDER_MAGIC) ||
        memcmp(rec.subject.p, FOLDER_MAGIC, rec.subject.n) != 0 || rec.date < 0 ||
        rec.date > (int64_t)UINT32_MAX)
        return -1;
    *uv = (uint32_t)rec.date;
    *ms = rec.size;
    b = (const unsigned char *)rec.x_label.p;
    while (b != NULL && pos < rec.x_label.n) {
        uint32_t d;

        if (!get_varint32(b, rec.x_label.n, &pos, &d) || d == 0 || pos >= rec.x_label.n ||
            d > UINT32_MAX - uid) {
            uid_list_free(l);
            return -1;
        }
        uid += d;
        if (l->n == l->cap) {
            l->cap = l->cap ? l->cap * 2 : 256;
            l->v = xreallocarray(l->v, l->cap, sizeof *l->v);
        }
        l->v[l->n].uid = uid;
        l->v[l->n].flags = b[pos++] & SERVER_FLAGS;
        l->n++;
    }
    return 1;
}

/* ---- pending flag changes ---------------------------------------------------------- */

static struct pending *pend_find(struct ib_priv *p, uint32_t uid)
{
    for (size_t i = 0; i < p->npend; i++)
        if (p->pend[i].uid == uid)
            return &p->pend[i];
    return NULL;
}

static void pend_add(struct ib_priv *p, uint32_t uid, unsigned add, unsigned del)
{
    struct pending *q = pend_find(p, uid);

    if (q == NULL) {
        if (p->npend == p->cappend) {
            p->cappend = p->cappend ? p->cappend * 2 : 8;
            p->pend = xreallocarray(p->pend, p->cappend, sizeof *p->pend);
        }
        q = &p->pend[p->npend++];
        q->uid = uid;
        q->add = q->del = 0;
    }
    q->add = (q->add | add) & ~del;
    q->del = (q->del | del) & ~add;
}

static void pend_remove(struct ib_priv *p, uint32_t uid)
{
    struct pending *q = pend_find(p, uid);

    if (q != NULL)
        *q = p->pend[--p->npend];
}

/* Put the pending changes back on their records (after a refresh gave
 * them the server's flags). */
static void pend_apply(struct mailbox *mb)
{
    struct ib_priv *p = priv(mb);
    struct store *st = &mb->store;

    if (p->npend == 0)
        return;
    for (uint32_t k = 0; k < store_count(st); k++) {
        struct store_msg *m = store_get_mut(st, k);
        const struct pending *q;

        if (!(m->bits & STORE_B_FILLED) || (m->bits & STORE_B_GONE))
            continue;
        q = pend_find(p, uid_of(st, k));
        if (q != NULL)
            m->flags = (uint16_t)((m->flags | q->add) & ~q->del);
    }
}

/* Send every pending change; each one the server confirms is dropped. */
static int pend_flush(struct mailbox *mb, struct err *e)
{
    struct ib_priv *p = priv(mb);
    size_t i = 0;

    while (i < p->npend) {
        struct pending q = p->pend[i];
        struct mailimap_set *set = set_single(q.uid);
        int rc = store_flags(mb, set, q.add, true, e);

        if (rc == 0)
            rc = store_flags(mb, set, q.del, false, e);
        mailimap_set_free(set);
        if (rc != 0) {
            if (!imap_usable(p->c))
                return -1;
            /* Refused (the message is gone, say): nothing to keep. */
            pend_remove(p, q.uid);
            continue;
        }
        pend_remove(p, q.uid);
    }
    return 0;
}

/* ---- IDLE -------------------------------------------------------------------------- */

static int write_cmd(mailimap *s, const char *text)
{
    size_t n = strlen(text);

    if (mailstream_write(s->imap_stream, text, n) != (ssize_t)n ||
        mailstream_flush(s->imap_stream) != 0)
        return MAILIMAP_ERROR_STREAM;
    return MAILIMAP_NO_ERROR;
}

/* "TAG IDLE": errors leave the connection to the next operation, which
 * connects again when it was dropped. */
static void idle_start(struct mailbox *mb)
{
    struct ib_priv *p = priv(mb);
    mailimap *s;
    struct err ignored;
    int r;

    if (p->idling || !imap_usable(p->c) || !imap_has_cap(p->c, "IDLE"))
        return;
    s = imap_session(p->c);
    r = mailimap_send_current_tag(s);
    if (r == MAILIMAP_NO_ERROR)
        r = write_cmd(s, "IDLE\r\n");
    /* The continuation; untagged data before it is picked up by the
     * refresh that ends the IDLE. */
    while (r == MAILIMAP_NO_ERROR) {
        if (mailimap_read_line(s) == NULL) {
            r = MAILIMAP_ERROR_STREAM;
            break;
        }
        if (s->imap_stream_buffer->len > 0 && s->imap_stream_buffer->str[0] == '+')
            break;
        if (s->imap_stream_buffer->len == 0 || s->imap_stream_buffer->str[0] != '*') {
            r = MAILIMAP_ERROR_PROTOCOL;   /* a tagged NO/BAD: no IDLE after all */
            break;
        }
    }
    if (r != MAILIMAP_NO_ERROR) {
        if (r == MAILIMAP_ERROR_PROTOCOL)
            imap_mark_broken(p->c);
        (void)imap_check(p->c, r, "IDLE", &ignored);
        return;
    }
    p->idling = true;
    p->idle_tag = s->imap_tag;
    p->idle_since = time(NULL);
}

/* Defined with the fetching code above. */
static int read_reply(mailimap *s, int t, clist **res);

/* DONE, and the IDLE's tagged reply (untagged data in between updates
 * the session). */
static int idle_done(struct mailbox *mb, struct err *e)
{
    struct ib_priv *p = priv(mb);
    mailimap *s;
    clist *res = NULL;
    int r;

    if (!p->idling)
        return 0;
    p->idling = false;
    if (!imap_usable(p->c))
        return imap_check(p->c, MAILIMAP_ERROR_STREAM, "IDLE", e);
    s = imap_session(p->c);
    r = write_cmd(s, "DONE\r\n");
    if (r == MAILIMAP_NO_ERROR)
        r = read_reply(s, p->idle_tag, &res);
    if (res != NULL)
        mailimap_fetch_list_free(res);
    if (r == MAILIMAP_ERROR_UID_FETCH)
        r = MAILIMAP_NO_ERROR;   /* a NO to IDLE: the session goes on */
    return imap_check(p->c, r, "IDLE", e);
}

/* ---- resynchronising -------------------------------------------------------------- */

struct slot_uid {
    uint32_t uid, idx;
};

static int cmp_slot_uid(const void *a, const void *b)
{
    uint32_t x = ((const struct slot_uid *)a)->uid, y = ((const struct slot_uid *)b)->uid;

    return (x > y) - (x < y);
}

static size_t live_count(const struct store *st)
{
    size_t n = 0;

    for (uint32_t k = 0; k < store_count(st); k++) {
        const struct store_msg *m = store_get(st, k);

        if ((m->bits & STORE_B_FILLED) && !(m->bits & STORE_B_GONE))
            n++;
    }
    return n;
}

static bool exists_known(mailimap *s, uint32_t *n)
{
    if (s->imap_selection_info == NULL || !s->imap_selection_info->sel_has_exists)
        return false;
    *n = s->imap_selection_info->sel_exists;
    return true;
}

/* Apply a list of (UID, flags) to the store: with full, l is every
 * message (the others vanished); else only changed ones (and vanished
 * says which went).  New UIDs are added and their headers fetched. */
static int apply_list(struct mailbox *mb, const struct uid_list *l, bool full,
                      const struct ranges *vanished, bool *changed, struct err *e)
{
    struct store *st = &mb->store;
    uint32_t n_before = store_count(st);
    struct slot_uid *known = XNEWARRAY(struct slot_uid, n_before > 0 ? n_before : 1);
    struct uid_flags *fresh = XNEWARRAY(struct uid_flags, l->n > 0 ? l->n : 1);
    size_t n_known = 0, n_fresh = 0, i = 0, j = 0;
    int rc = 0;

    for (uint32_t k = 0; k < n_before; k++) {
        const struct store_msg *m = store_get(st, k);

        if ((m->bits & STORE_B_FILLED) && !(m->bits & STORE_B_GONE)) {
            known[n_known].uid = uid_of(st, k);
            known[n_known].idx = k;
            n_known++;
        }
    }
    qsort(known, n_known, sizeof *known, cmp_slot_uid);
    while (i < n_known || j < l->n) {
        if (j >= l->n || (i < n_known && known[i].uid < l->v[j].uid)) {
            if (full || (vanished != NULL && ranges_has(vanished, known[i].uid))) {
                store_get_mut(st, known[i].idx)->bits |= STORE_B_GONE;
                cache_del(mb, known[i].uid);
                *changed = true;
            }
            i++;
        } else if (i >= n_known || l->v[j].uid < known[i].uid) {
            if (vanished == NULL || !ranges_has(vanished, l->v[j].uid))
                fresh[n_fresh++] = l->v[j];
            j++;
        } else {
            struct store_msg *m = store_get_mut(st, known[i].idx);
            unsigned nf = (l->v[j].flags & (SERVER_FLAGS | MSG_NEW)) |
                          (m->flags & MAILBOX_SESSION_FLAGS);

            if ((m->flags & ~MSG_NEW) != (nf & ~MSG_NEW) ||
                ((m->flags & MSG_NEW) && !(nf & MSG_NEW))) {
                m->flags = (uint16_t)nf;
                *changed = true;
            }
            i++;
            j++;
        }
    }
    if (*changed)
        priv(mb)->dirty = true;
    if (n_fresh > 0) {
        priv(mb)->dirty = true;
        rc = add_messages(mb, fresh, n_fresh, NULL, NULL, e);
        *changed = true;
        /* Slots the server gave nothing for stay empty: drop them. */
        for (uint32_t k = n_before; k < store_count(st); k++)
            if (!(store_get(st, k)->bits & STORE_B_FILLED))
                store_get_mut(st, k)->bits |= STORE_B_FILLED | STORE_B_GONE;
    }
    free(fresh);
    free(known);
    return rc;
}

/* UID FETCH 1:* (UID FLAGS) (CHANGEDSINCE ms [VANISHED]): what changed
 * since ms into l (sorted; initialised here), what vanished added to vr,
 * the highest MODSEQ seen into *maxmod. */
static int fetch_changed(struct mailbox *mb, uint64_t ms, struct uid_list *l,
                         struct ranges *vr, uint64_t *maxmod, struct err *e)
{
    struct ib_priv *p = priv(mb);
    mailimap *s = imap_session(p->c);
    struct mailimap_fetch_type *ft = mailimap_fetch_type_new_fetch_att_list_empty();
    struct mailimap_set *set = mailimap_set_new_interval(1, 0);
    struct mailimap_qresync_vanished *van = NULL;
    clist *res = NULL;
    int r;

    memset(l, 0, sizeof *l);
    if (ft == NULL || set == NULL)
        die("out of memory");
    mailimap_fetch_type_new_fetch_att_list_add(ft, mailimap_fetch_att_new_uid());
    mailimap_fetch_type_new_fetch_att_list_add(ft, mailimap_fetch_att_new_flags());
    if (p->qresync)
        r = mailimap_uid_fetch_qresync(s, set, ft, ms, &res, &van);
    else
        r = mailimap_uid_fetch_changedsince(s, set, ft, ms, &res);
    mailimap_fetch_type_free(ft);
    mailimap_set_free(set);
    if (imap_check(p->c, r, "UID FETCH (CHANGEDSINCE)", e) != 0)
        return -1;
    collect_flags(res, l, maxmod);
    mailimap_fetch_list_free(res);
    if (van != NULL) {
        ranges_add_set(vr, van->qr_known_uids);
        mailimap_qresync_vanished_free(van);
    }
    ranges_add_session(vr, s);
    sort_uids(l);
    return 0;
}

/* Bring the store in step with the selected folder: with CONDSTORE and a
 * known modseq only what changed since (UID FETCH 1:* (FLAGS)
 * (CHANGEDSINCE m [VANISHED])), else every UID and its flags.  When the
 * count does not come out as EXISTS says, every UID is asked for. */
static int refresh(struct mailbox *mb, bool *changed, struct err *e)
{
    struct ib_priv *p = priv(mb);
    mailimap *s = imap_session(p->c);
    struct uid_list l;
    uint32_t exists;
    int rc;

    if (p->modseq > 0 && imap_has_cap(p->c, "CONDSTORE")) {
        struct ranges vr = {NULL, 0, 0};
        uint64_t maxmod = p->modseq;

        if (fetch_changed(mb, p->modseq, &l, &vr, &maxmod, e) != 0)
            return -1;
        sort_uids(&l);
        rc = apply_list(mb, &l, false, &vr, changed, e);
        uid_list_free(&l);
        ranges_free(&vr);
        if (rc != 0)
            return -1;
        if (exists_known(s, &exists) && exists == live_count(&mb->store)) {
            if (maxmod != p->modseq)
                p->dirty = true;
            p->modseq = maxmod;
            return 0;
        }
        /* Expunges the count did not explain: ask for every UID. */
    }
    if (fetch_all_flags(mb, &l, e) != 0)
        return -1;
    rc = apply_list(mb, &l, true, NULL, changed, e);
    uid_list_free(&l);
    return rc;
}

/* ---- open / close ------------------------------------------------------------ */

static void qr_forget(struct ib_priv *p)
{
    if (p->qr_known != NULL) {
        uid_list_free(p->qr_known);
        free(p->qr_known);
    }
    if (p->qr_changed != NULL) {
        uid_list_free(p->qr_changed);
        free(p->qr_changed);
    }
    if (p->qr_vanished != NULL)
        mailimap_set_free(p->qr_vanished);
    p->qr_known = p->qr_changed = NULL;
    p->qr_vanished = NULL;
    p->qr_have = false;
}

static void ib_close(struct mailbox *mb)
{
    struct ib_priv *p = priv(mb);
    struct err ignored;

    if (p == NULL)
        return;
    if (p->idling)
        (void)idle_done(mb, &ignored);
    /* Not synced: a folder record older than the records is still right
     * (the server reports every change since its modseq). */
    if (p->hc != NULL && p->uidvalidity != 0 && (p->dirty || p->npend > 0))
        folder_save(mb);
    hcache_close(p->hc);
    imap_close(p->c);
    imap_url_free(&p->url);
    free(p->cache_id);
    hcache_recbuf_free(&p->rb);
    hcache_refs_free(&p->rf);
    buf_free(&p->xl);
    qr_forget(p);
    free(p->pend);
    free(p);
    mb->priv = NULL;
}

/* ENABLE QRESYNC when the server offers it. */
static void enable_qresync(struct mailbox *mb)
{
    struct ib_priv *p = priv(mb);
    struct err ignored;

    p->qresync = false;
    if (imap_has_cap(p->c, "QRESYNC") && imap_has_cap(p->c, "ENABLE") &&
        imap_simple(p->c, "ENABLE QRESYNC", &ignored) == 0)
        p->qresync = true;
}

/* SELECT (EXAMINE when read-only), with CONDSTORE when offered; with
 * QRESYNC and a folder record (uv, ms != 0), SELECT ... (QRESYNC (uv ms))
 * whose FETCH and VANISHED results are kept for load. */
static int select_folder(struct mailbox *mb, uint32_t uv, uint64_t ms, struct err *e)
{
    struct ib_priv *p = priv(mb);
    mailimap *s = imap_session(p->c);
    const char *what = mb->readonly ? "EXAMINE" : "SELECT";
    uint64_t modseq = 0;
    int r;

    if (p->qresync && !mb->readonly && uv != 0 && ms != 0) {
        clist *res = NULL;
        struct mailimap_qresync_vanished *van = NULL;

        r = mailimap_select_qresync(s, p->url.folder, uv, ms, NULL, NULL, NULL, &res, &van,
                                    &modseq);
        if (r == MAILIMAP_NO_ERROR) {
            struct ranges vr = {NULL, 0, 0};

            p->qr_changed = XNEW(struct uid_list);
            collect_flags(res, p->qr_changed, NULL);
            sort_uids(p->qr_changed);
            mailimap_fetch_list_free(res);
            if (van != NULL) {
                ranges_add_set(&vr, van->qr_known_uids);
                mailimap_qresync_vanished_free(van);
            }
            ranges_add_session(&vr, s);
            p->qr_vanished = mailimap_set_new_empty();
            if (p->qr_vanished == NULL)
                die("out of memory");
            for (size_t i = 0; i < vr.n; i++)
                mailimap_set_add_interval(p->qr_vanished, vr.v[i].first, vr.v[i].last);
            ranges_free(&vr);
            p->qr_have = true;
            p->qr_ms = ms;
        }
    } else if (imap_has_cap(p->c, "CONDSTORE")) {
        r = mb->readonly ? mailimap_examine_condstore(s, p->url.folder, &modseq)
                         : mailimap_select_condstore(s, p->url.folder, &modseq);
    } else {
        r = mb->readonly ? mailimap_examine(s, p->url.folder) : mailimap_select(s, p->url.folder);
    }
    if (imap_check(p->c, r, what, e) != 0) {
        err_prefix(e, "%s", p->url.folder);
        return -1;
    }
    p->uidvalidity = s->imap_selection_info != NULL ? s->imap_selection_info->sel_uidvalidity : 0;
    p->modseq = modseq;
    if (p->qr_have && p->uidvalidity != uv)
        qr_forget(p);   /* a new UIDVALIDITY: the server ignored our state */
    return 0;
}

static int ib_open(struct mailbox *mb, const char *path, unsigned flags, struct err *e)
{
    struct ib_priv *p = XNEW(struct ib_priv);
    const struct imap_settings *set = imap_settings_get();
    struct uid_list known;
    uint32_t uv = 0;
    uint64_t ms = 0;
    const char *user;
    char *account;
    struct err w;
    int fr = 0;

    mb->priv = p;
    p->open_flags = flags;
    hcache_recbuf_init(&p->rb);
    buf_init(&p->xl, 0);
    message_limits_default(&p->lim);
    p->lim.max_header_bytes = IMAP_HEADER_MAX;
    if (imap_url_parse(path, &p->url, e) != 0 || imap_connect(&p->url, set, &p->c, e) != 0) {
        ib_close(mb);
        return -1;
    }
    free(mb->name);
    mb->name = xstrdup(p->url.folder);
    /* The header cache takes an absolute name: "/" before the URL of the
     * folder with its user and port made explicit. */
    user = imap_user(p->c);
    account = imap_url_account(&p->url, user);
    p->cache_id = xasprintf("/%s%s", account, p->url.folder);
    free(account);
    if (!(flags & MAILBOX_NO_HCACHE) &&
        hcache_open(mb->hcache_dir, p->cache_id, &p->hc, &w) != 0) {
        warn(mb, &w, "running without the header cache");
        p->hc = NULL;
    }
    memset(&known, 0, sizeof known);
    if (p->hc != NULL) {
        fr = folder_read(mb, &known, &uv, &ms);
        if (fr <= 0 && hcache_open_state(p->hc) == HCACHE_REUSED) {
            /* A cache of the schema before the folder record (or with a
             * damaged one): rebuilt. */
            if (hcache_prune(p->hc, keep_nothing, NULL, NULL, &w) != 0)
                drop_cache(mb, &w);
        }
    }
    enable_qresync(mb);
    if (select_folder(mb, fr > 0 ? uv : 0, fr > 0 ? ms : 0, e) != 0) {
        uid_list_free(&known);
        ib_close(mb);
        return -1;
    }
    if (p->qr_have) {
        p->qr_known = XNEW(struct uid_list);
        *p->qr_known = known;
    } else {
        uid_list_free(&known);
    }
    p->tags_before = 0;
    return 0;
}

/* ---- connecting again ---------------------------------------------------------- */

static int load_full(struct mailbox *mb, mailbox_progress_fn progress, void *ctx,
                     struct err *e);

static void backoff(unsigned attempt)
{
    struct timespec ts;
    long ms = attempt == 0 ? 0 : 250L << (2 * (attempt - 1));   /* 0, 250 ms, 1 s */

    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    while (ms > 0 && nanosleep(&ts, &ts) != 0)
        ;
}

/* One new connection after a drop: SELECT, then a resync by UID (the
 * store keeps its records), the pending flag changes sent; or, when the
 * UIDVALIDITY changed, a full reload. */
static int reconnect_once(struct mailbox *mb, struct err *e)
{
    struct ib_priv *p = priv(mb);
    uint32_t old_uv = p->uidvalidity;
    uint64_t old_ms = p->modseq;
    bool changed = false;

    if (p->c != NULL)
        p->tags_before += (uint64_t)imap_session(p->c)->imap_tag;
    imap_close(p->c);
    p->c = NULL;
    p->idling = false;
    if (imap_connect(&p->url, imap_settings_get(), &p->c, e) != 0)
        return -1;
    enable_qresync(mb);
    if (select_folder(mb, 0, 0, e) != 0)
        return -1;
    p->reconnects++;
    if (p->uidvalidity != old_uv) {
        struct err w;

        p->reloads++;
        p->reloaded = true;
        p->dirty = true;
        if (load_full(mb, NULL, NULL, e) != 0)
            return -1;
        err_set(&w, ERR_OK, "the folder was recreated on the server (new UIDVALIDITY): "
                            "reloaded");
        mb->has_warning = false;
        warn(mb, &w, mb->name);
        p->npend = 0;   /* their messages are gone with the old UIDs */
        return 0;
    }
    /* The modseq this store is in step with, not the server's newest. */
    p->modseq = old_ms;
    if (refresh(mb, &changed, e) != 0)
        return -1;
    pend_apply(mb);
    if (pend_flush(mb, e) != 0)
        return -1;
    if (changed)
        p->reloaded = true;   /* check() reports it */
    cache_commit(mb);
    return 0;
}

static int reconnect(struct mailbox *mb, struct err *e)
{
    struct err last;

    err_set(&last, ERR_NET, "not connected");
    for (unsigned attempt = 0; attempt < RECONNECT_TRIES; attempt++) {
        struct ib_priv *p = priv(mb);

        backoff(attempt);
        if (reconnect_once(mb, &last) == 0)
            return 0;
        /* A refusal (password, certificate, folder gone) will not change. */
        if (p->c == NULL && !last.temporary)
            break;
        if (p->c != NULL && !imap_dropped(p->c) && imap_usable(p->c))
            break;
    }
    if (e != NULL)
        *e = last;
    err_prefix(e, "%s: connecting again", mb->name);
    return -1;
}

/* Before any command: leave IDLE; connect again when the connection was
 * dropped. */
static int ready(struct mailbox *mb, struct err *e)
{
    struct ib_priv *p = priv(mb);

    if (p->idling && idle_done(mb, e) != 0 && !imap_dropped(p->c))
        return -1;
    if (imap_usable(p->c))
        return 0;
    if (p->c != NULL && !imap_dropped(p->c))
        return not_connected(mb, e);
    return reconnect(mb, e);
}

/* After a failed command: whether to connect again and retry it. */
static bool dropped(struct mailbox *mb)
{
    return imap_dropped(priv(mb)->c);
}

/* ---- load / check -------------------------------------------------------------- */

static int load_full(struct mailbox *mb, mailbox_progress_fn progress, void *ctx,
                     struct err *e)
{
    struct ib_priv *p = priv(mb);
    struct uid_list l;
    int rc;

    store_reset(&mb->store);
    if (fetch_all_flags(mb, &l, e) != 0)
        return -1;
    rc = add_messages(mb, l.v, l.n, progress, ctx, e);
    cache_commit(mb);
    if (rc == 0 && p->hc != NULL) {
        uint32_t *keep = XNEWARRAY(uint32_t, l.n > 0 ? l.n : 1);
        size_t removed = 0;
        struct err w;

        for (size_t i = 0; i < l.n; i++)
            keep[i] = l.v[i].uid;
        p->keep_uids = keep;
        p->keep_n = l.n;
        if (hcache_prune(p->hc, keep_key, p, &removed, &w) != 0)
            drop_cache(mb, &w);
        mb->stats.cache_stale = removed;
        p->keep_uids = NULL;
        free(keep);
    }
    uid_list_free(&l);
    if (rc != 0) {
        store_reset(&mb->store);
        return -1;
    }
    store_compact(&mb->store, NULL);
    return 0;
}

/* A load from the folder record and what the QRESYNC SELECT said: the
 * known UIDs less the vanished ones, changed flags applied, headers only
 * for new UIDs.  1 when it could not be used (the caller loads fully). */
static int load_qresync(struct mailbox *mb, mailbox_progress_fn progress, void *ctx,
                        struct err *e)
{
    struct ib_priv *p = priv(mb);
    const struct uid_list *k = p->qr_known;
    struct uid_list *c = p->qr_changed;
    struct ranges vr = {NULL, 0, 0};
    struct uid_list l;
    size_t i = 0, j = 0;
    uint32_t exists = 0;
    int rc;

    struct uid_list more;
    uint64_t maxmod = p->modseq;

    ranges_add_set(&vr, p->qr_vanished);
    /* The SELECT's own FETCH data may not reach us through libetpan: ask
     * for what changed since the stored modseq once more (only those). */
    if (fetch_changed(mb, p->qr_ms, &more, &vr, &maxmod, e) != 0) {
        ranges_free(&vr);
        return -1;
    }
    for (size_t m = 0; m < more.n; m++) {
        if (c->n == c->cap) {
            c->cap = c->cap ? c->cap * 2 : 64;
            c->v = xreallocarray(c->v, c->cap, sizeof *c->v);
        }
        c->v[c->n++] = more.v[m];
    }
    uid_list_free(&more);
    sort_uids(c);
    memset(&l, 0, sizeof l);
    l.cap = k->n + c->n + 1;
    l.v = XNEWARRAY(struct uid_flags, l.cap);
    while (i < k->n || j < c->n) {
        struct uid_flags u;

        if (j >= c->n || (i < k->n && k->v[i].uid < c->v[j].uid)) {
            u = k->v[i++];
        } else if (i >= k->n || c->v[j].uid < k->v[i].uid) {
            u = c->v[j++];
        } else {
            u = c->v[j++];
            i++;
        }
        if (ranges_has(&vr, u.uid)) {
            cache_del(mb, u.uid);
            continue;
        }
        l.v[l.n++] = u;
    }
    ranges_free(&vr);
    if (!exists_known(imap_session(p->c), &exists) || exists != l.n) {
        uid_list_free(&l);
        return 1;
    }
    store_reset(&mb->store);
    rc = add_messages(mb, l.v, l.n, progress, ctx, e);
    uid_list_free(&l);
    cache_commit(mb);
    if (rc != 0) {
        store_reset(&mb->store);
        return -1;
    }
    store_compact(&mb->store, NULL);
    return 0;
}

static int ib_load(struct mailbox *mb, mailbox_progress_fn progress, void *ctx, struct err *e)
{
    struct ib_priv *p = priv(mb);
    int rc = 1;

    memset(&mb->stats, 0, sizeof mb->stats);
    store_reset(&mb->store);
    if (ready(mb, e) != 0)
        return -1;
    p->used_qresync = false;
    if (p->qr_have) {
        rc = load_qresync(mb, progress, ctx, e);
        p->used_qresync = rc == 0;
        p->dirty = rc != 0 || mb->stats.cache_misses > 0 || p->qr_changed->n > 0 ||
                   (p->qr_vanished != NULL && p->qr_vanished->set_list != NULL &&
                    clist_count(p->qr_vanished->set_list) > 0) ||
                   p->modseq != p->qr_ms;
        qr_forget(p);
    }
    if (rc == 1) {
        p->dirty = true;
        rc = load_full(mb, progress, ctx, e);
        if (rc != 0 && dropped(mb) && ready(mb, e) == 0)
            rc = load_full(mb, progress, ctx, e);
    }
    if (rc != 0)
        return -1;
    if (p->dirty) {
        folder_save(mb);
        cache_commit(mb);
        p->dirty = false;
    }
    p->reloaded = false;
    return 0;
}

static int ib_check(struct mailbox *mb, bool *changed, struct err *e)
{
    struct ib_priv *p = priv(mb);
    bool from_idle = false;
    int rc;

    *changed = false;
    if (p->idling && imap_usable(p->c) && time(NULL) - p->idle_since < IDLE_RENEW_S) {
        int r = imap_poll(p->c, IDLE_POLL_MS);

        if (r == 0)
            return 0;   /* nothing from the server: stay in IDLE */
    }
    from_idle = p->idling;
    if (ready(mb, e) != 0)
        return -1;
    if (p->reloaded) {
        *changed = true;
        p->reloaded = false;
    }
    rc = from_idle ? 0 : imap_check(p->c, mailimap_noop(imap_session(p->c)), "NOOP", e);
    if (rc == 0)
        rc = refresh(mb, changed, e);
    if (rc != 0 && dropped(mb) && ready(mb, e) == 0) {
        *changed = true;   /* the reconnect resynchronised */
        rc = 0;
    }
    if (rc != 0)
        return -1;
    if (p->npend > 0)
        (void)pend_flush(mb, e);
    cache_commit(mb);
    idle_start(mb);
    return 0;
}

/* ---- reading messages --------------------------------------------------------- */

static int do_read(struct mailbox *mb, uint32_t idx, struct buf *out, bool headers_only,
                   struct err *e)
{
    struct ib_priv *p = priv(mb);
    struct mailimap_fetch_type *ft;
    struct mailimap_set *set;
    clist *res = NULL;
    uint32_t uid;
    bool found = false;
    int r, rc = 0;

    uid = uid_of(&mb->store, idx);
    ft = mailimap_fetch_type_new_fetch_att_list_empty();
    if (ft == NULL)
        die("out of memory");
    mailimap_fetch_type_new_fetch_att_list_add(ft, mailimap_fetch_att_new_uid());
    mailimap_fetch_type_new_fetch_att_list_add(
        ft, mailimap_fetch_att_new_body_peek_section(
                headers_only ? mailimap_section_new_header() : mailimap_section_new(NULL)));
    set = set_single(uid);
    r = mailimap_uid_fetch(imap_session(p->c), set, ft, &res);
    mailimap_fetch_type_free(ft);
    mailimap_set_free(set);
    if (imap_check(p->c, r, headers_only ? "UID FETCH (header)" : "UID FETCH (message)", e) != 0)
        return -1;
    for (clistiter *it = clist_begin(res); it != NULL && !found; it = clist_next(it)) {
        struct mailimap_msg_att *att = clist_content(it);
        uint32_t got_uid = 0;
        const struct mailimap_msg_att_body_section *sec = NULL;

        for (clistiter *j = clist_begin(att->att_list); j != NULL; j = clist_next(j)) {
            struct mailimap_msg_att_item *item = clist_content(j);
            struct mailimap_msg_att_static *sa;

            if (item->att_type != MAILIMAP_MSG_ATT_ITEM_STATIC)
                continue;
            sa = item->att_data.att_static;
            if (sa->att_type == MAILIMAP_MSG_ATT_UID)
                got_uid = sa->att_data.att_uid;
            else if (sa->att_type == MAILIMAP_MSG_ATT_BODY_SECTION)
                sec = sa->att_data.att_body_section;
        }
        if (got_uid != uid || sec == NULL)
            continue;
        found = true;
        if (sec->sec_body_part != NULL && sec->sec_length > 0 &&
            buf_append(out, sec->sec_body_part, sec->sec_length) != 0)
            rc = err_set(e, ERR_LIMIT, "message larger than the buffer allows");
    }
    mailimap_fetch_list_free(res);
    if (rc == 0 && !found) {
        err_set(e, ERR_NOTFOUND, "message %u is no longer on the server", uid);
        err_scope(e, ERR_SCOPE_MSG, false);
        return -1;
    }
    return rc;
}

/* The message numbers a reload after a new UIDVALIDITY made meaningless. */
static int reloaded_err(struct mailbox *mb, struct err *e)
{
    err_set(e, ERR_NOTFOUND, "%s was recreated on the server and has been reloaded",
            mb->name);
    err_scope(e, ERR_SCOPE_BOX, false);
    return -1;
}

/* Ready for a command on message idx; -1 also when a reconnect reloaded
 * the folder (idx means something else now). */
static int ready_msg(struct mailbox *mb, uint32_t idx, struct err *e)
{
    unsigned reloads = priv(mb)->reloads;
    const struct store_msg *m;

    if (idx >= store_count(&mb->store))
        return err_set(e, ERR_NOTFOUND, "no message %u", idx);
    m = store_get(&mb->store, idx);
    if (!(m->bits & STORE_B_FILLED) || (m->bits & STORE_B_GONE))
        return err_set(e, ERR_NOTFOUND, "message %u is gone", idx);
    if (ready(mb, e) != 0)
        return -1;
    if (priv(mb)->reloads != reloads)
        return reloaded_err(mb, e);
    return check_msg(mb, idx, e);
}

/* A FETCH is idempotent: after a drop, connect again and fetch once more. */
static int ib_read(struct mailbox *mb, uint32_t idx, struct buf *out, bool headers_only,
                   struct err *e)
{
    size_t len0 = out->len;
    int rc;

    if (ready_msg(mb, idx, e) != 0)
        return -1;
    rc = do_read(mb, idx, out, headers_only, e);
    if (rc != 0 && dropped(mb)) {
        out->len = len0;
        if (ready_msg(mb, idx, e) != 0)
            return -1;
        rc = do_read(mb, idx, out, headers_only, e);
    }
    return rc;
}

static int ib_read_message(struct mailbox *mb, uint32_t idx, struct buf *out, struct err *e)
{
    return ib_read(mb, idx, out, false, e);
}

static int ib_read_headers(struct mailbox *mb, uint32_t idx, struct buf *out, struct err *e)
{
    return ib_read(mb, idx, out, true, e);
}

/* ---- writing ------------------------------------------------------------------- */

/*
 * A flag change is first a pending change (kept until the server confirms
 * it) and the record shows it at once; then UID STORE.  When the
 * connection dropped, the reconnect's resync sends every pending change
 * again (STORE +FLAGS/-FLAGS is idempotent).  A change that cannot be
 * sent now stays pending and goes with the next operation that connects.
 */
static int ib_set_flags(struct mailbox *mb, uint32_t idx, unsigned flags, struct err *e)
{
    struct ib_priv *p = priv(mb);
    struct store_msg *m;
    unsigned old, add, del, reloads = p->reloads;
    uint32_t uid;
    int rc = 0;

    if (idx >= store_count(&mb->store))
        return err_set(e, ERR_NOTFOUND, "no message %u", idx);
    m = store_get_mut(&mb->store, idx);
    if (!(m->bits & STORE_B_FILLED) || (m->bits & STORE_B_GONE))
        return err_set(e, ERR_NOTFOUND, "message %u is gone", idx);
    old = m->flags & SERVER_FLAGS;
    add = flags & SERVER_FLAGS & ~old;
    del = old & ~flags & SERVER_FLAGS;
    if ((add != 0 || del != 0) && mb->readonly)
        return refuse_readonly(mb, e);
    m->flags = (uint16_t)((flags & (SERVER_FLAGS | MAILBOX_SESSION_FLAGS)) |
                          (flags & m->flags & MSG_NEW));
    if (add == 0 && del == 0)
        return 0;
    uid = uid_of(&mb->store, idx);
    pend_add(p, uid, add, del);
    p->dirty = true;
    if (ready(mb, e) != 0)
        rc = -1;
    else if (p->reloads != reloads)
        return reloaded_err(mb, e);
    else if (pend_find(p, uid) != NULL)
        rc = pend_flush(mb, e);
    if (rc != 0 && dropped(mb) && ready(mb, e) == 0) {
        if (p->reloads != reloads)
            return reloaded_err(mb, e);
        rc = pend_find(p, uid) != NULL ? pend_flush(mb, e) : 0;
    }
    if (rc != 0 && pend_find(p, uid) != NULL)
        err_prefix(e, "the flag change is kept and sent when the server is back");
    return rc;
}

/* UID EXPUNGE of set with UIDPLUS, else EXPUNGE. */
static int expunge(struct mailbox *mb, struct mailimap_set *set, struct err *e)
{
    struct ib_priv *p = priv(mb);

    if (imap_has_cap(p->c, "UIDPLUS"))
        return imap_check(p->c, mailimap_uid_expunge(imap_session(p->c), set), "UID EXPUNGE",
                          e);
    return imap_check(p->c, mailimap_expunge(imap_session(p->c)), "EXPUNGE", e);
}

static int ib_sync(struct mailbox *mb, struct mailbox_sync_errs *errs, struct err *e)
{
    struct store *st = &mb->store;
    struct mailimap_set *set;
    struct err se;
    size_t n = 0;
    int rc;

    for (uint32_t i = 0; i < store_count(st); i++) {
        const struct store_msg *m = store_get(st, i);

        if ((m->bits & STORE_B_FILLED) && !(m->bits & STORE_B_GONE) &&
            (m->flags & MSG_DELETED))
            n++;
    }
    if (n == 0)
        return 0;
    if (!mb->readonly && ready(mb, &se) != 0) {
        if (e != NULL)
            *e = se;
        for (uint32_t i = 0; i < store_count(st); i++) {
            const struct store_msg *m = store_get(st, i);

            if ((m->bits & STORE_B_FILLED) && !(m->bits & STORE_B_GONE) &&
                (m->flags & MSG_DELETED))
                mailbox_sync_errs_add(errs, i, &se);
        }
        return -1;
    }
    if (mb->readonly || !imap_usable(priv(mb)->c)) {
        struct err me;

        if (mb->readonly)
            refuse_readonly(mb, &me);
        else
            not_connected(mb, &me);
        for (uint32_t i = 0; i < store_count(st); i++) {
            const struct store_msg *m = store_get(st, i);

            if ((m->bits & STORE_B_FILLED) && !(m->bits & STORE_B_GONE) &&
                (m->flags & MSG_DELETED))
                mailbox_sync_errs_add(errs, i, &me);
        }
        if (e != NULL)
            *e = me;
        return -1;
    }
    set = mailimap_set_new_empty();
    if (set == NULL)
        die("out of memory");
    for (uint32_t i = 0; i < store_count(st); i++) {
        const struct store_msg *m = store_get(st, i);

        if ((m->bits & STORE_B_FILLED) && !(m->bits & STORE_B_GONE) &&
            (m->flags & MSG_DELETED))
            mailimap_set_add_single(set, uid_of(st, i));
    }
    rc = store_flags(mb, set, MSG_TRASHED, true, &se);
    if (rc == 0)
        rc = expunge(mb, set, &se);
    mailimap_set_free(set);
    if (rc != 0) {
        for (uint32_t i = 0; i < store_count(st); i++) {
            const struct store_msg *m = store_get(st, i);

            if ((m->bits & STORE_B_FILLED) && !(m->bits & STORE_B_GONE) &&
                (m->flags & MSG_DELETED))
                mailbox_sync_errs_add(errs, i, &se);
        }
        if (e != NULL)
            *e = se;
        return -1;
    }
    for (uint32_t i = 0; i < store_count(st); i++) {
        struct store_msg *m = store_get_mut(st, i);

        if ((m->bits & STORE_B_FILLED) && !(m->bits & STORE_B_GONE) &&
            (m->flags & MSG_DELETED)) {
            priv(mb)->dirty = true;
            m->bits |= STORE_B_GONE;
            cache_del(mb, uid_of(st, i));
        }
    }
    cache_commit(mb);
    return 0;
}

/* The folder name on this server that dest names: a folder name, or an
 * IMAP URL of the same server and user. */
static int dest_name(struct mailbox *mb, const char *dest, char **out, struct err *e)
{
    struct ib_priv *p = priv(mb);
    struct imap_url u;

    *out = NULL;
    if (!imap_url_is(dest)) {
        if (strstr(dest, "://") != NULL || dest[0] == '/' || dest[0] == '\0')
            return err_set(e, ERR_UNSUPPORTED, "%s is not a folder on this IMAP server", dest);
        for (const char *q = dest; *q != '\0'; q++)
            if ((unsigned char)*q < 0x20 || *q == 0x7f)
                return err_set(e, ERR_INVAL, "control character in a folder name");
        *out = xstrdup(dest);
        return 0;
    }
    if (imap_url_parse(dest, &u, e) != 0)
        return -1;
    if (strcasecmp(u.host, p->url.host) != 0 || u.port != p->url.port ||
        (u.user != NULL && strcmp(u.user, imap_user(p->c)) != 0)) {
        imap_url_free(&u);
        return err_set(e, ERR_UNSUPPORTED, "copying to another IMAP account is not supported");
    }
    *out = u.folder;
    u.folder = NULL;
    imap_url_free(&u);
    return 0;
}

/* Before a command that must not run twice (COPY, APPEND, EXPUNGE): a
 * NOOP finds a connection that died while nothing was sent (a killed
 * server process, a suspend), so the command itself goes on a live one. */
static int probe(struct mailbox *mb, struct err *e)
{
    struct ib_priv *p = priv(mb);

    if (imap_check(p->c, mailimap_noop(imap_session(p->c)), "NOOP", e) == 0)
        return 0;
    return dropped(mb) ? ready(mb, e) : -1;
}

static int ib_copy(struct mailbox *mb, uint32_t idx, const char *dest_folder, bool move,
                   struct err *e)
{
    struct ib_priv *p = priv(mb);
    struct mailimap_set *set;
    char *dest = NULL;
    unsigned reloads = p->reloads;
    uint32_t uid;
    int rc;

    if (move && mb->readonly)
        return refuse_readonly(mb, e);
    if (dest_name(mb, dest_folder, &dest, e) != 0)
        return -1;
    if (ready_msg(mb, idx, e) != 0 || probe(mb, e) != 0 ||
        (priv(mb)->reloads != reloads && reloaded_err(mb, e) != 0)) {
        free(dest);
        return -1;
    }
    uid = uid_of(&mb->store, idx);
    set = set_single(uid);
    if (move && imap_has_cap(p->c, "MOVE")) {
        rc = imap_check(p->c, mailimap_uid_move(imap_session(p->c), set, dest), "UID MOVE", e);
        /* MOVE is all or nothing: after a drop, the resync tells which. */
        if (rc != 0 && dropped(mb) && ready(mb, e) == 0 && p->reloads == reloads) {
            if (store_get(&mb->store, idx)->bits & STORE_B_GONE)
                rc = 0;
            else
                rc = imap_check(p->c, mailimap_uid_move(imap_session(p->c), set, dest),
                                "UID MOVE", e);
        }
    } else {
        rc = imap_check(p->c, mailimap_uid_copy(imap_session(p->c), set, dest), "UID COPY", e);
        if (rc == 0 && move) {
            rc = store_flags(mb, set, MSG_TRASHED, true, e);
            if (rc == 0 && !imap_has_cap(p->c, "UIDPLUS")) {
                /* A plain EXPUNGE would take other deleted messages too:
                 * leave this one marked for the next sync. */
                struct store_msg *m = store_get_mut(&mb->store, idx);

                m->flags |= MSG_TRASHED | MSG_DELETED;
                mailimap_set_free(set);
                free(dest);
                return 0;
            }
            if (rc == 0)
                rc = expunge(mb, set, e);
        }
    }
    mailimap_set_free(set);
    free(dest);
    if (rc == 0 && move) {
        p->dirty = true;
        store_get_mut(&mb->store, idx)->bits |= STORE_B_GONE;
        cache_del(mb, uid);
        cache_commit(mb);
    }
    return rc;
}

static int ib_append(struct mailbox *mb, const void *data, size_t len, unsigned flags,
                     struct err *e)
{
    struct ib_priv *p = priv(mb);
    struct mailimap_flag_list *fl;
    bool changed;
    int r;

    if (mb->readonly)
        return refuse_readonly(mb, e);
    if (ready(mb, e) != 0 || probe(mb, e) != 0)
        return -1;
    fl = flag_list_of(flags);
    if (fl == NULL) {
        fl = mailimap_flag_list_new_empty();
        if (fl == NULL)
            die("out of memory");
    }
    r = mailimap_append(imap_session(p->c), p->url.folder, fl, NULL, data, len);
    mailimap_flag_list_free(fl);
    if (imap_check(p->c, r, "APPEND", e) != 0)
        return -1;
    /* Stored on the server: bring it into the store. */
    return ib_check(mb, &changed, e);
}

void mbox_imap_stats(const struct mailbox *mb, struct imap_stats *out)
{
    const struct ib_priv *p;

    memset(out, 0, sizeof *out);
    if (mb == NULL || mb->ops != &mbox_imap_ops || mb->priv == NULL)
        return;
    p = mb->priv;
    out->bytes_in = p->c != NULL ? imap_bytes_in(p->c) : 0;
    out->commands = p->tags_before +
                    (p->c != NULL ? (uint64_t)imap_session(p->c)->imap_tag : 0);
    out->reconnects = p->reconnects;
    out->reloads = p->reloads;
    out->qresync = p->used_qresync;
    out->idling = p->idling;
    out->pending_flags = p->npend;
}

const struct mailbox_ops mbox_imap_ops = {
    .name = "imap",
    .open = ib_open,
    .load = ib_load,
    .check = ib_check,
    .read_message = ib_read_message,
    .read_headers = ib_read_headers,
    .set_flags = ib_set_flags,
    .sync = ib_sync,
    .copy = ib_copy,
    .append = ib_append,
    .close = ib_close,
};
