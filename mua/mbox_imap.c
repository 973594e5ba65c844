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
 * Check is NOOP, then a UID FLAGS refresh of the whole folder: new UIDs
 * are added, vanished ones marked gone, changed flags applied.
 */
#include "mailbox.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

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
#define SERVER_FLAGS (MSG_SEEN | MSG_REPLIED | MSG_FLAGGED | MSG_DRAFT | MSG_TRASHED | MSG_PASSED)

static const char *const header_fields[] = {
    "DATE", "FROM", "TO", "CC", "SUBJECT", "MESSAGE-ID", "IN-REPLY-TO", "REFERENCES",
    "LIST-ID", "X-LABEL",
};

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
    for (clistiter *it = clist_begin(res); it != NULL; it = clist_next(it)) {
        struct mailimap_msg_att *att = clist_content(it);
        struct uid_flags uf = {0, 0};

        for (clistiter *j = clist_begin(att->att_list); j != NULL; j = clist_next(j)) {
            struct mailimap_msg_att_item *item = clist_content(j);

            if (item->att_type == MAILIMAP_MSG_ATT_ITEM_DYNAMIC)
                uf.flags |= flags_of(item->att_data.att_dyn);
            else if (item->att_type == MAILIMAP_MSG_ATT_ITEM_STATIC &&
                     item->att_data.att_static->att_type == MAILIMAP_MSG_ATT_UID)
                uf.uid = item->att_data.att_static->att_data.att_uid;
        }
        if (uf.uid == 0)
            continue;
        if (l->n == l->cap) {
            l->cap = l->cap ? l->cap * 2 : 256;
            l->v = xreallocarray(l->v, l->cap, sizeof *l->v);
        }
        l->v[l->n++] = uf;
    }
    mailimap_fetch_list_free(res);
    qsort(l->v, l->n, sizeof *l->v, cmp_uid);
    /* A server that repeats a UID: keep the first. */
    if (l->n > 1) {
        size_t k = 1;

        for (size_t i = 1; i < l->n; i++)
            if (l->v[i].uid != l->v[k - 1].uid)
                l->v[k++] = l->v[i];
        l->n = k;
    }
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

/* ---- open / close ------------------------------------------------------------ */

static void ib_close(struct mailbox *mb)
{
    struct ib_priv *p = priv(mb);

    if (p == NULL)
        return;
    cache_commit(mb);
    hcache_close(p->hc);
    imap_close(p->c);
    imap_url_free(&p->url);
    free(p->cache_id);
    hcache_recbuf_free(&p->rb);
    hcache_refs_free(&p->rf);
    buf_free(&p->xl);
    free(p);
    mb->priv = NULL;
}

static int select_folder(struct mailbox *mb, struct err *e)
{
    struct ib_priv *p = priv(mb);
    mailimap *s = imap_session(p->c);
    const char *what = mb->readonly ? "EXAMINE" : "SELECT";
    uint64_t modseq = 0;
    int r;

    if (imap_has_cap(p->c, "CONDSTORE"))
        r = mb->readonly ? mailimap_examine_condstore(s, p->url.folder, &modseq)
                         : mailimap_select_condstore(s, p->url.folder, &modseq);
    else
        r = mb->readonly ? mailimap_examine(s, p->url.folder) : mailimap_select(s, p->url.folder);
    if (imap_check(p->c, r, what, e) != 0) {
        err_prefix(e, "%s", p->url.folder);
        return -1;
    }
    p->uidvalidity = s->imap_selection_info != NULL ? s->imap_selection_info->sel_uidvalidity : 0;
    return 0;
}

static int ib_open(struct mailbox *mb, const char *path, unsigned flags, struct err *e)
{
    struct ib_priv *p = XNEW(struct ib_priv);
    const struct imap_settings *set = imap_settings_get();
    const char *user;
    char *account;
    struct err w;

    mb->priv = p;
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
    if (select_folder(mb, e) != 0) {
        ib_close(mb);
        return -1;
    }
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
    return 0;
}

/* ---- load / check -------------------------------------------------------------- */

static int ib_load(struct mailbox *mb, mailbox_progress_fn progress, void *ctx, struct err *e)
{
    struct ib_priv *p = priv(mb);
    struct uid_list l;
    int rc;

    memset(&mb->stats, 0, sizeof mb->stats);
    store_reset(&mb->store);
    if (!imap_usable(p->c))
        return not_connected(mb, e);
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

struct slot_uid {
    uint32_t uid, idx;
};

static int cmp_slot_uid(const void *a, const void *b)
{
    uint32_t x = ((const struct slot_uid *)a)->uid, y = ((const struct slot_uid *)b)->uid;

    return (x > y) - (x < y);
}

static int ib_check(struct mailbox *mb, bool *changed, struct err *e)
{
    struct ib_priv *p = priv(mb);
    struct store *st = &mb->store;
    uint32_t n_before = store_count(st);
    struct slot_uid *known = XNEWARRAY(struct slot_uid, n_before > 0 ? n_before : 1);
    struct uid_flags *fresh = NULL;
    size_t n_known = 0, n_fresh = 0, i = 0, j = 0;
    struct uid_list l;
    int rc;

    *changed = false;
    if (!imap_usable(p->c)) {
        free(known);
        return not_connected(mb, e);
    }
    rc = imap_check(p->c, mailimap_noop(imap_session(p->c)), "NOOP", e);
    if (rc == 0)
        rc = fetch_all_flags(mb, &l, e);
    if (rc != 0) {
        free(known);
        return -1;
    }
    for (uint32_t k = 0; k < n_before; k++) {
        const struct store_msg *m = store_get(st, k);

        if ((m->bits & STORE_B_FILLED) && !(m->bits & STORE_B_GONE)) {
            known[n_known].uid = uid_of(st, k);
            known[n_known].idx = k;
            n_known++;
        }
    }
    qsort(known, n_known, sizeof *known, cmp_slot_uid);
    fresh = XNEWARRAY(struct uid_flags, l.n > 0 ? l.n : 1);
    while (i < n_known || j < l.n) {
        if (j >= l.n || (i < n_known && known[i].uid < l.v[j].uid)) {
            store_get_mut(st, known[i].idx)->bits |= STORE_B_GONE;
            cache_del(mb, known[i].uid);
            *changed = true;
            i++;
        } else if (i >= n_known || l.v[j].uid < known[i].uid) {
            fresh[n_fresh++] = l.v[j];
            j++;
        } else {
            struct store_msg *m = store_get_mut(st, known[i].idx);
            unsigned nf = (l.v[j].flags & (SERVER_FLAGS | MSG_NEW)) |
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
    if (n_fresh > 0) {
        rc = add_messages(mb, fresh, n_fresh, NULL, NULL, e);
        *changed = true;
        /* Slots the server gave nothing for stay empty: drop them. */
        for (uint32_t k = n_before; k < store_count(st); k++)
            if (!(store_get(st, k)->bits & STORE_B_FILLED))
                store_get_mut(st, k)->bits |= STORE_B_FILLED | STORE_B_GONE;
    }
    cache_commit(mb);
    free(fresh);
    free(known);
    uid_list_free(&l);
    return rc;
}

/* ---- reading messages --------------------------------------------------------- */

static int ib_read(struct mailbox *mb, uint32_t idx, struct buf *out, bool headers_only,
                   struct err *e)
{
    struct ib_priv *p = priv(mb);
    struct mailimap_fetch_type *ft;
    struct mailimap_set *set;
    clist *res = NULL;
    uint32_t uid;
    bool found = false;
    int r, rc = 0;

    if (check_msg(mb, idx, e) != 0)
        return -1;
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

static int ib_read_message(struct mailbox *mb, uint32_t idx, struct buf *out, struct err *e)
{
    return ib_read(mb, idx, out, false, e);
}

static int ib_read_headers(struct mailbox *mb, uint32_t idx, struct buf *out, struct err *e)
{
    return ib_read(mb, idx, out, true, e);
}

/* ---- writing ------------------------------------------------------------------- */

static int ib_set_flags(struct mailbox *mb, uint32_t idx, unsigned flags, struct err *e)
{
    struct ib_priv *p = priv(mb);
    struct store_msg *m;
    unsigned old, add, del;
    struct mailimap_set *set;
    int rc = 0;

    if (idx >= store_count(&mb->store))
        return err_set(e, ERR_NOTFOUND, "no message %u", idx);
    m = store_get_mut(&mb->store, idx);
    if (!(m->bits & STORE_B_FILLED) || (m->bits & STORE_B_GONE))
        return err_set(e, ERR_NOTFOUND, "message %u is gone", idx);
    old = m->flags & SERVER_FLAGS;
    add = flags & SERVER_FLAGS & ~old;
    del = old & ~flags & SERVER_FLAGS;
    if (add != 0 || del != 0) {
        if (mb->readonly)
            return refuse_readonly(mb, e);
        if (!imap_usable(p->c))
            return not_connected(mb, e);
        set = set_single(uid_of(&mb->store, idx));
        rc = store_flags(mb, set, add, true, e);
        if (rc == 0)
            rc = store_flags(mb, set, del, false, e);
        mailimap_set_free(set);
        if (rc != 0)
            return -1;
    }
    m = store_get_mut(&mb->store, idx);
    m->flags = (uint16_t)((flags & (SERVER_FLAGS | MAILBOX_SESSION_FLAGS)) |
                          (flags & m->flags & MSG_NEW));
    return 0;
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

static int ib_copy(struct mailbox *mb, uint32_t idx, const char *dest_folder, bool move,
                   struct err *e)
{
    struct ib_priv *p = priv(mb);
    struct mailimap_set *set;
    char *dest = NULL;
    uint32_t uid;
    int rc;

    if (check_msg(mb, idx, e) != 0)
        return -1;
    if (move && mb->readonly)
        return refuse_readonly(mb, e);
    if (dest_name(mb, dest_folder, &dest, e) != 0)
        return -1;
    uid = uid_of(&mb->store, idx);
    set = set_single(uid);
    if (move && imap_has_cap(p->c, "MOVE")) {
        rc = imap_check(p->c, mailimap_uid_move(imap_session(p->c), set, dest), "UID MOVE", e);
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
    if (!imap_usable(p->c))
        return not_connected(mb, e);
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
