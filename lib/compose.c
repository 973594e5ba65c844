#include "compose.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef HAVE_LIBMAGIC
#include <magic.h>
#endif

#include "charset.h"
#include "codec.h"

#define CMP_LINE_MAX 998          /* RFC 5322 hard limit, without CRLF */
#define CMP_EW_MAX 75             /* RFC 2047 encoded-word limit */
#define CMP_EW_OVERHEAD 12        /* "=?UTF-8?Q?" + "?=" */
#define CMP_WORD_MAX 900          /* longer plain words are encoded */
#define CMP_GAP_MAX 64            /* longer blank runs are encoded */
#define CMP_NAME_MAX 76           /* header field name */
#define CMP_ID_MAX 900            /* message id */
#define CMP_LOCAL_MAX 64          /* RFC 5321 local part */
#define CMP_ADDR_MAX 254          /* RFC 5321 path without <> */
#define CMP_QP_LINE 76
#define CMP_B64_LINE_BYTES 57     /* 76 base64 characters */
#define CMP_BOUNDARY_RANDOM 24
#define CMP_BOUNDARY_TRIES 64
#define CMP_PLAIN_PARAM_MAX 60    /* longer file names use RFC 2231 */
#define CMP_WHAT_MAX 256

static const char cmp_default_host[] = "localhost.localdomain";

/* ---- small helpers ------------------------------------------------------ */

static void put(struct buf *b, const void *p, size_t n)
{
    if (buf_append(b, p, n) < 0)
        die("compose: unbounded buffer refused an append");
}

static void puts_(struct buf *b, const char *s)
{
    put(b, s, strlen(s));
}

static void putc_(struct buf *b, char c)
{
    put(b, &c, 1);
}

static void printf_(struct buf *b, const char *fmt, ...) CORREO_PRINTF(2, 3);

static void printf_(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = buf_vprintf(b, fmt, ap);
    va_end(ap);
    if (rc < 0)
        die("compose: unbounded buffer refused an append");
}

static bool cmp_wsp(char c)
{
    return c == ' ' || c == '\t';
}

static bool cmp_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* RFC 5322 atext. */
static bool cmp_atext(unsigned char c)
{
    return cmp_alnum(c) || (c && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

/* RFC 2045 token character. */
static bool cmp_tchar(unsigned char c)
{
    return c > 0x20 && c < 0x7f && !strchr("()<>@,;:\\\"/[]?=", c);
}

/* Length of the UTF-8 sequence starting at s[0] (input already validated;
 * stray bytes count as one). */
static size_t cmp_u8len(const char *s, size_t n)
{
    unsigned char c = (unsigned char)s[0];
    size_t k = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;

    return k <= n ? k : n;
}

/* Characters (code points) in s[0..n). */
static size_t cmp_u8count(const char *s, size_t n)
{
    size_t k = 0;

    for (size_t i = 0; i < n; i++)
        k += ((unsigned char)s[i] & 0xc0) != 0x80;
    return k;
}

/* A short excerpt of user text for an error message: printable ASCII as
 * is, everything else as \xHH, cut at 40 bytes. */
static void cmp_excerpt(const char *s, size_t n, char *dst, size_t dstsz)
{
    size_t k = 0;

    for (size_t i = 0; i < n && k + 8 < dstsz; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i >= 40) {
            memcpy(dst + k, "...", 3);
            k += 3;
            break;
        }
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            dst[k++] = (char)c;
        } else {
            snprintf(dst + k, dstsz - k, "\\x%02x", c);
            k += 4;
        }
    }
    dst[k] = '\0';
}

/* ---- validation --------------------------------------------------------- */

static int cmp_check_text(const char *what, const char *s, struct err *e)
{
    size_t n;

    if (!s)
        return 0;
    n = strlen(s);
    if (strpbrk(s, "\r\n"))
        return err_set(e, ERR_INVAL, "%s: contains a line break", what);
    if (!charset_valid_utf8(s, n))
        return err_set(e, ERR_INVAL, "%s: not valid UTF-8", what);
    return 0;
}

/* quoted-string at s[0] == '"'; returns its length including quotes, or 0. */
static size_t cmp_quoted_len(const char *s, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"')
            return i + 1;
        if (c == '\\') {
            if (i + 1 >= n || (unsigned char)s[i + 1] < 0x20 || (unsigned char)s[i + 1] > 0x7e)
                return 0;
            i++;
        } else if (c < 0x20 || c > 0x7e) {
            return 0;
        }
    }
    return 0;
}

static bool cmp_dot_atom(const char *s, size_t n)
{
    if (n == 0 || s[0] == '.' || s[n - 1] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.') {
            if (s[i + 1] == '.')
                return false;
        } else if (!cmp_atext((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}

/* Why addr is not an addr-spec we write, or NULL if it is fine. */
static const char *cmp_addr_problem(const char *addr)
{
    size_t n = strlen(addr), at;
    const char *dom;

    if (n == 0)
        return "empty address";
    if (strpbrk(addr, "\r\n"))
        return "line break in the address";
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)addr[i] >= 0x80)
            return "non-ASCII address (SMTPUTF8 is not supported)";
    if (n > CMP_ADDR_MAX)
        return "address longer than 254 characters";
    if (addr[0] == '"') {
        at = cmp_quoted_len(addr, n);
        if (at == 0)
            return "bad quoted local part";
    } else {
        const char *a = strrchr(addr, '@');
        at = a ? (size_t)(a - addr) : n;
        if (!cmp_dot_atom(addr, at))
            return at == n ? "no '@' in the address" : "bad character in the local part";
    }
    if (at >= n || addr[at] != '@')
        return "no '@' in the address";
    if (at > CMP_LOCAL_MAX + (addr[0] == '"' ? 2u : 0u))
        return "local part longer than 64 characters";
    dom = addr + at + 1;
    if (*dom == '[') {
        size_t dl = strlen(dom);
        if (dl < 3 || dom[dl - 1] != ']')
            return "bad domain literal";
        for (size_t i = 1; i + 1 < dl; i++)
            if ((unsigned char)dom[i] <= 0x20 || dom[i] == '[' || dom[i] == ']' ||
                dom[i] == '\\' || (unsigned char)dom[i] > 0x7e)
                return "bad domain literal";
        return NULL;
    }
    if (!*dom)
        return "empty domain";
    if (!cmp_dot_atom(dom, strlen(dom)))
        return "bad character in the domain";
    return NULL;
}

bool compose_valid_addr(const char *addr)
{
    return addr && cmp_addr_problem(addr) == NULL;
}

bool compose_valid_msgid(const char *id)
{
    size_t n;

    if (!id)
        return false;
    n = strlen(id);
    if (n == 0 || n > CMP_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)id[i];
        if (c <= 0x20 || c >= 0x7f || c == '<' || c == '>')
            return false;
    }
    return true;
}

static int cmp_check_msgid(const char *what, const char *id, struct err *e)
{
    char ex[200];

    if (!id)
        return 0;
    if (strpbrk(id, "\r\n"))
        return err_set(e, ERR_INVAL, "%s: contains a line break", what);
    if (!compose_valid_msgid(id)) {
        cmp_excerpt(id, strlen(id), ex, sizeof ex);
        return err_set(e, ERR_INVAL, "%s: \"%s\" is not a valid message id", what, ex);
    }
    return 0;
}

static int cmp_check_addrs(const char *field, const struct msg_addr_list *l, struct err *e)
{
    char what[CMP_WHAT_MAX], ex[200];
    const char *why;

    for (size_t i = 0; i < l->n; i++) {
        snprintf(what, sizeof what, "%s: address %zu display name", field, i + 1);
        if (cmp_check_text(what, l->v[i].name, e) < 0)
            return -1;
        if (!l->v[i].addr)
            return err_set(e, ERR_INVAL, "%s: address %zu is missing", field, i + 1);
        why = cmp_addr_problem(l->v[i].addr);
        if (why) {
            if (strpbrk(l->v[i].addr, "\r\n"))
                return err_set(e, ERR_INVAL, "%s: address %zu: contains a line break",
                               field, i + 1);
            cmp_excerpt(l->v[i].addr, strlen(l->v[i].addr), ex, sizeof ex);
            return err_set(e, ERR_INVAL, "%s: address %zu \"%s\": %s", field, i + 1, ex, why);
        }
    }
    return 0;
}

static const char *const cmp_reserved[] = {
    "date", "from", "to", "cc", "bcc", "subject", "message-id", "in-reply-to",
    "references", "reply-to", "mime-version",
};

static int cmp_check_header(size_t idx, const struct compose_header *h, struct err *e)
{
    char what[CMP_WHAT_MAX], ex[200];
    size_t n;

    if (!h->name || !h->name[0])
        return err_set(e, ERR_INVAL, "header %zu: empty field name", idx + 1);
    n = strlen(h->name);
    cmp_excerpt(h->name, n, ex, sizeof ex);
    if (strpbrk(h->name, "\r\n"))
        return err_set(e, ERR_INVAL, "header %zu field name: contains a line break", idx + 1);
    if (n > CMP_NAME_MAX)
        return err_set(e, ERR_INVAL, "header \"%s\": field name longer than %d characters",
                       ex, CMP_NAME_MAX);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)h->name[i];
        if (c <= 0x20 || c >= 0x7f || c == ':')
            return err_set(e, ERR_INVAL, "header \"%s\": invalid character in the field name",
                           ex);
    }
    for (size_t i = 0; i < ARRAY_LEN(cmp_reserved); i++)
        if (strcasecmp(h->name, cmp_reserved[i]) == 0)
            return err_set(e, ERR_INVAL, "header \"%s\": set through its own field, not as an "
                           "extra header", ex);
    if (strncasecmp(h->name, "content-", 8) == 0)
        return err_set(e, ERR_INVAL, "header \"%s\": MIME fields are written by the composer",
                       ex);
    if (!h->value)
        return err_set(e, ERR_INVAL, "header \"%s\": no value", ex);
    snprintf(what, sizeof what, "header \"%s\" value", ex);
    return cmp_check_text(what, h->value, e);
}

/* Lower-cased "type/subtype" or NULL if mt is not a valid one. */
static char *cmp_norm_type(const char *mt)
{
    const char *slash = strchr(mt, '/');
    size_t n = strlen(mt);
    char *r;

    if (!slash || slash == mt || !slash[1] || strchr(slash + 1, '/'))
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (mt + i != slash && !cmp_tchar((unsigned char)mt[i]))
            return NULL;
    r = xstrdup(mt);
    for (size_t i = 0; i < n; i++)
        if (r[i] >= 'A' && r[i] <= 'Z')
            r[i] = (char)(r[i] - 'A' + 'a');
    return r;
}

static int cmp_check_attachment(size_t idx, const struct compose_attachment *a, struct err *e)
{
    char what[CMP_WHAT_MAX];

    if (!a->data && a->len > 0)
        return err_set(e, ERR_INVAL, "attachment %zu: no data", idx + 1);
    snprintf(what, sizeof what, "attachment %zu file name", idx + 1);
    if (cmp_check_text(what, a->filename, e) < 0)
        return -1;
    snprintf(what, sizeof what, "attachment %zu description", idx + 1);
    if (cmp_check_text(what, a->description, e) < 0)
        return -1;
    if (a->mime_type && !a->is_message) {
        char *t;
        if (strpbrk(a->mime_type, "\r\n"))
            return err_set(e, ERR_INVAL, "attachment %zu MIME type: contains a line break",
                           idx + 1);
        t = cmp_norm_type(a->mime_type);
        if (!t)
            return err_set(e, ERR_INVAL, "attachment %zu: MIME type is not \"type/subtype\"",
                           idx + 1);
        bool multi = strncmp(t, "multipart/", 10) == 0;
        free(t);
        if (multi)
            return err_set(e, ERR_INVAL, "attachment %zu: a multipart type cannot be attached "
                           "as data", idx + 1);
    }
    return 0;
}

int compose_check(const struct compose_msg *m, struct err *e)
{
    if (m->from.n == 0)
        return err_set(e, ERR_INVAL, "From: no address");
    if (cmp_check_addrs("From", &m->from, e) < 0 || cmp_check_addrs("To", &m->to, e) < 0 ||
        cmp_check_addrs("Cc", &m->cc, e) < 0 || cmp_check_addrs("Bcc", &m->bcc, e) < 0 ||
        cmp_check_addrs("Reply-To", &m->reply_to, e) < 0)
        return -1;
    if (cmp_check_text("Subject", m->subject, e) < 0)
        return -1;
    if (cmp_check_msgid("Message-ID", m->message_id, e) < 0 ||
        cmp_check_msgid("In-Reply-To", m->in_reply_to, e) < 0)
        return -1;
    for (size_t i = 0; i < m->n_references; i++) {
        char what[CMP_WHAT_MAX];
        snprintf(what, sizeof what, "References: id %zu", i + 1);
        if (!m->references[i])
            return err_set(e, ERR_INVAL, "%s is missing", what);
        if (cmp_check_msgid(what, m->references[i], e) < 0)
            return -1;
    }
    if (m->tz_fixed && (m->tz_minutes <= -1440 || m->tz_minutes >= 1440))
        return err_set(e, ERR_INVAL, "Date: zone offset %d minutes out of range", m->tz_minutes);
    for (size_t i = 0; i < m->n_headers; i++)
        if (cmp_check_header(i, &m->headers[i], e) < 0)
            return -1;
    if (m->body && !charset_valid_utf8(m->body, strlen(m->body)))
        return err_set(e, ERR_INVAL, "body: not valid UTF-8");
    for (size_t i = 0; i < m->n_attachments; i++)
        if (cmp_check_attachment(i, &m->attachments[i], e) < 0)
            return -1;
    return 0;
}

/* ---- the model ---------------------------------------------------------- */

void compose_msg_init(struct compose_msg *m)
{
    memset(m, 0, sizeof *m);
}

void compose_addrs_add(struct msg_addr_list *l, const char *name, const char *addr)
{
    l->v = xreallocarray(l->v, l->n + 1, sizeof *l->v);
    l->v[l->n].name = name ? xstrdup(name) : NULL;
    l->v[l->n].addr = xstrdup(addr ? addr : "");
    l->n++;
}

void compose_addrs_free(struct msg_addr_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].name);
        free(l->v[i].addr);
    }
    free(l->v);
    memset(l, 0, sizeof *l);
}

void compose_free_strings(char **v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void compose_msg_free(struct compose_msg *m)
{
    compose_addrs_free(&m->from);
    compose_addrs_free(&m->to);
    compose_addrs_free(&m->cc);
    compose_addrs_free(&m->bcc);
    compose_addrs_free(&m->reply_to);
    free(m->subject);
    free(m->message_id);
    free(m->in_reply_to);
    compose_free_strings(m->references, m->n_references);
    for (size_t i = 0; i < m->n_headers; i++) {
        free(m->headers[i].name);
        free(m->headers[i].value);
    }
    free(m->headers);
    free(m->body);
    for (size_t i = 0; i < m->n_attachments; i++) {
        free(m->attachments[i].data);
        free(m->attachments[i].filename);
        free(m->attachments[i].mime_type);
        free(m->attachments[i].description);
    }
    free(m->attachments);
    memset(m, 0, sizeof *m);
}

static void cmp_replace(char **dst, const char *s)
{
    free(*dst);
    *dst = s ? xstrdup(s) : NULL;
}

void compose_set_subject(struct compose_msg *m, const char *subject)
{
    cmp_replace(&m->subject, subject);
}

void compose_set_body(struct compose_msg *m, const char *body)
{
    cmp_replace(&m->body, body);
}

void compose_add_reference(struct compose_msg *m, const char *id)
{
    m->references = xreallocarray(m->references, m->n_references + 1, sizeof *m->references);
    m->references[m->n_references++] = xstrdup(id);
}

void compose_add_header(struct compose_msg *m, const char *name, const char *value)
{
    m->headers = xreallocarray(m->headers, m->n_headers + 1, sizeof *m->headers);
    m->headers[m->n_headers].name = xstrdup(name);
    m->headers[m->n_headers].value = xstrdup(value ? value : "");
    m->n_headers++;
}

struct compose_attachment *compose_add_attachment(struct compose_msg *m, const void *data,
                                                  size_t len, const char *filename,
                                                  const char *mime_type)
{
    struct compose_attachment *a;

    m->attachments = xreallocarray(m->attachments, m->n_attachments + 1,
                                   sizeof *m->attachments);
    a = &m->attachments[m->n_attachments++];
    memset(a, 0, sizeof *a);
    a->data = len ? xmemdup0(data, len) : NULL;
    a->len = len;
    a->filename = filename ? xstrdup(filename) : NULL;
    a->mime_type = mime_type ? xstrdup(mime_type) : NULL;
    return a;
}

/* ---- MIME types --------------------------------------------------------- */

struct cmp_ext {
    const char *ext;
    const char *type;
};

static const struct cmp_ext cmp_exts[] = {
    {"7z", "application/x-7z-compressed"},
    {"aac", "audio/aac"},
    {"avi", "video/x-msvideo"},
    {"avif", "image/avif"},
    {"bmp", "image/bmp"},
    {"bz2", "application/x-bzip2"},
    {"c", "text/x-c"},
    {"cpp", "text/x-c++"},
    {"css", "text/css"},
    {"csv", "text/csv"},
    {"diff", "text/x-diff"},
    {"doc", "application/msword"},
    {"docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
    {"eml", "message/rfc822"},
    {"epub", "application/epub+zip"},
    {"flac", "audio/flac"},
    {"gif", "image/gif"},
    {"gz", "application/gzip"},
    {"h", "text/x-c"},
    {"heic", "image/heic"},
    {"htm", "text/html"},
    {"html", "text/html"},
    {"ics", "text/calendar"},
    {"jpeg", "image/jpeg"},
    {"jpg", "image/jpeg"},
    {"js", "text/javascript"},
    {"json", "application/json"},
    {"log", "text/plain"},
    {"m4a", "audio/mp4"},
    {"md", "text/markdown"},
    {"mkv", "video/x-matroska"},
    {"mov", "video/quicktime"},
    {"mp3", "audio/mpeg"},
    {"mp4", "video/mp4"},
    {"odp", "application/vnd.oasis.opendocument.presentation"},
    {"ods", "application/vnd.oasis.opendocument.spreadsheet"},
    {"odt", "application/vnd.oasis.opendocument.text"},
    {"ogg", "audio/ogg"},
    {"opus", "audio/ogg"},
    {"patch", "text/x-diff"},
    {"pdf", "application/pdf"},
    {"png", "image/png"},
    {"ppt", "application/vnd.ms-powerpoint"},
    {"pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation"},
    {"ps", "application/postscript"},
    {"py", "text/x-python"},
    {"rar", "application/vnd.rar"},
    {"rtf", "application/rtf"},
    {"sh", "application/x-sh"},
    {"svg", "image/svg+xml"},
    {"tar", "application/x-tar"},
    {"tgz", "application/gzip"},
    {"tif", "image/tiff"},
    {"tiff", "image/tiff"},
    {"txt", "text/plain"},
    {"vcf", "text/vcard"},
    {"wav", "audio/wav"},
    {"webm", "video/webm"},
    {"webp", "image/webp"},
    {"xls", "application/vnd.ms-excel"},
    {"xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
    {"xml", "application/xml"},
    {"xz", "application/x-xz"},
    {"yaml", "application/yaml"},
    {"yml", "application/yaml"},
    {"zip", "application/zip"},
    {"zst", "application/zstd"},
};

static int cmp_ext_cmp(const void *key, const void *elem)
{
    return strcasecmp(key, ((const struct cmp_ext *)elem)->ext);
}

static int cmp_copy_type(const char *t, char *out, size_t size)
{
    size_t n = strlen(t);

    if (n >= size) {
        if (size)
            out[0] = '\0';
        return -1;
    }
    memcpy(out, t, n + 1);
    return 0;
}

#ifdef HAVE_LIBMAGIC
/* Type by content, or false. */
static bool cmp_magic_type(const char *path, char *out, size_t size)
{
    magic_t mg = magic_open(MAGIC_MIME_TYPE | MAGIC_SYMLINK | MAGIC_ERROR);
    const char *t;
    bool ok = false;

    if (!mg)
        return false;
    if (magic_load(mg, NULL) == 0 && (t = magic_file(mg, path)) != NULL) {
        char *norm = cmp_norm_type(t);
        /* "application/octet-stream" is no better than the fallback */
        if (norm && strcmp(norm, "application/octet-stream") != 0 &&
            strncmp(norm, "inode/", 6) != 0 && cmp_copy_type(norm, out, size) == 0)
            ok = true;
        free(norm);
    }
    magic_close(mg);
    return ok;
}
#endif

int compose_mime_type(const char *path, char *out, size_t size)
{
    const char *base = strrchr(path, '/');
    const char *dot;
    const struct cmp_ext *hit = NULL;

    base = base ? base + 1 : path;
    dot = strrchr(base, '.');
    if (dot && dot != base && dot[1])
        hit = bsearch(dot + 1, cmp_exts, ARRAY_LEN(cmp_exts), sizeof cmp_exts[0], cmp_ext_cmp);
#ifdef HAVE_LIBMAGIC
    /* The content decides; the name only refines libmagic's generic
     * answers (text/plain for CSV or Markdown, a zip for an OpenDocument
     * or Office file) or stands in when libmagic has none. */
    if (cmp_magic_type(path, out, size)) {
        bool generic = strcmp(out, "text/plain") == 0 || strcmp(out, "application/zip") == 0;
        bool same_family = hit && strncmp(out, hit->type, strcspn(out, "/") + 1) == 0;
        if (!hit || !generic ||
            !(same_family || strcmp(out, "application/zip") == 0))
            return 0;
    }
#endif
    if (hit)
        return cmp_copy_type(hit->type, out, size);
    return cmp_copy_type("application/octet-stream", out, size);
}

int compose_attach_file(struct compose_msg *m, const char *path, size_t max_size,
                        struct err *e)
{
    struct buf data = BUF_INIT;
    struct stat st;
    char type[128];
    const char *base;
    int fd;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        err_sys(e, "%s", path);
        if (errno == ENOENT && e)
            e->code = ERR_NOTFOUND;
        return -1;
    }
    if (fstat(fd, &st) < 0) {
        err_sys(e, "%s", path);
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(e, ERR_INVAL, "%s: not a regular file", path);
    }
    if (max_size && (uintmax_t)st.st_size > max_size) {
        close(fd);
        return err_set(e, ERR_LIMIT, "%s: larger than %zu bytes", path, max_size);
    }
    for (;;) {
        char *p = buf_reserve(&data, 65536);
        ssize_t r;
        if (!p)
            die("compose: unbounded buffer refused a reservation");
        r = read(fd, p, 65536);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            err_sys(e, "%s", path);
            buf_free(&data);
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        buf_commit(&data, (size_t)r);
        if (max_size && data.len > max_size) {
            /* the file grew while it was read */
            buf_free(&data);
            close(fd);
            return err_set(e, ERR_LIMIT, "%s: larger than %zu bytes", path, max_size);
        }
    }
    close(fd);
    base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (compose_mime_type(path, type, sizeof type) < 0)
        memcpy(type, "application/octet-stream", sizeof "application/octet-stream");
    compose_add_attachment(m, data.data, data.len, *base ? base : NULL, type);
    buf_free(&data);
    return 0;
}

/* ---- address parsing ---------------------------------------------------- */

struct cmp_entry {
    struct buf name;     /* phrase words, blanks collapsed */
    struct buf bare;     /* entry text without comments and angle part */
    struct buf comment;  /* first comment's text */
    struct buf angle;    /* inside <...> */
    bool has_angle, has_comment, gap;
    bool bare_gap;       /* blanks or a comment after some bare text */
    bool multiword;      /* bare text in several blank-separated pieces */
};

/* Raw text outside comments and <...>; what a bare addr-spec is made of. */
static void cmp_bare_piece(struct cmp_entry *en, const char *s, size_t n)
{
    if (en->bare_gap)
        en->multiword = true;
    put(&en->bare, s, n);
}

static void cmp_name_piece(struct cmp_entry *en, const char *s, size_t n)
{
    if (en->gap && en->name.len > 0)
        putc_(&en->name, ' ');
    put(&en->name, s, n);
    en->gap = false;
}

static void cmp_entry_free(struct cmp_entry *en)
{
    buf_free(&en->name);
    buf_free(&en->bare);
    buf_free(&en->comment);
    buf_free(&en->angle);
}

/* Quoted string at s[*i] == '"': content appended to dst (unescaped) and the
 * raw text to raw; returns false if unterminated. */
static bool cmp_read_quoted(const char *s, size_t *i, struct buf *dst, struct buf *raw)
{
    size_t st = *i;

    for ((*i)++; s[*i]; (*i)++) {
        if (s[*i] == '\\' && s[*i + 1]) {
            (*i)++;
        } else if (s[*i] == '"') {
            (*i)++;
            put(raw, s + st, *i - st);
            return true;
        }
        putc_(dst, s[*i]);
    }
    return false;
}

/* Comment at s[*i] == '(' (nested, with escapes); false if unterminated. */
static bool cmp_read_comment(const char *s, size_t *i, struct buf *dst)
{
    int depth = 0;

    for (; s[*i]; (*i)++) {
        char c = s[*i];
        if (c == '\\' && s[*i + 1]) {
            (*i)++;
            putc_(dst, s[*i]);
            continue;
        }
        if (c == '(' && depth++ == 0)
            continue;
        if (c == ')' && --depth == 0) {
            (*i)++;
            return true;
        }
        putc_(dst, c);
    }
    return false;
}

/* Trim blanks at both ends and collapse inner runs (used for comments). */
static char *cmp_collapse(const char *s, size_t n)
{
    struct buf b = BUF_INIT;
    bool gap = false;

    for (size_t i = 0; i < n; i++) {
        if (cmp_wsp(s[i])) {
            gap = b.len > 0;
            continue;
        }
        if (gap)
            putc_(&b, ' ');
        gap = false;
        putc_(&b, s[i]);
    }
    return buf_steal(&b, NULL);
}

static int cmp_entry_error(struct err *e, size_t idx, const char *s, size_t n, const char *why)
{
    char ex[200];

    cmp_excerpt(s, n, ex, sizeof ex);
    return err_set(e, ERR_INVAL, "address %zu \"%s\": %s", idx, ex, why);
}

/* Scan one entry from s[*i]; stops at a top-level ',' / ';' or the end. */
static int cmp_scan_entry(const char *s, size_t *i, size_t idx, struct cmp_entry *en,
                          struct err *e)
{
    size_t st = *i;

    while (s[*i] && s[*i] != ',' && s[*i] != ';') {
        char c = s[*i];
        if (cmp_wsp(c)) {
            en->gap = true;
            en->bare_gap = en->bare.len > 0;
            (*i)++;
        } else if (c == '"') {
            struct buf q = BUF_INIT;
            if (en->has_angle) {
                buf_free(&q);
                return cmp_entry_error(e, idx, s + st, strlen(s + st),
                                       "text after the <address>");
            }
            struct buf raw = BUF_INIT;
            bool ok = cmp_read_quoted(s, i, &q, &raw);
            cmp_bare_piece(en, buf_cstr(&raw), raw.len);
            buf_free(&raw);
            if (!ok) {
                buf_free(&q);
                return cmp_entry_error(e, idx, s + st, strlen(s + st),
                                       "unterminated quoted string");
            }
            cmp_name_piece(en, buf_cstr(&q), q.len);
            buf_free(&q);
        } else if (c == '(') {
            struct buf cm = BUF_INIT;
            if (!cmp_read_comment(s, i, &cm)) {
                buf_free(&cm);
                return cmp_entry_error(e, idx, s + st, strlen(s + st),
                                       "unterminated comment");
            }
            if (!en->has_comment) {
                en->has_comment = true;
                put(&en->comment, buf_cstr(&cm), cm.len);
            }
            buf_free(&cm);
            en->gap = true;
            en->bare_gap = en->bare.len > 0;
        } else if (c == '<') {
            size_t j = *i + 1;
            if (en->has_angle)
                return cmp_entry_error(e, idx, s + st, strlen(s + st),
                                       "more than one <address>");
            while (s[j] && s[j] != '>') {
                if (s[j] == '"') {
                    struct buf q = BUF_INIT;
                    bool ok = cmp_read_quoted(s, &j, &q, &en->angle);
                    buf_free(&q);
                    if (!ok)
                        return cmp_entry_error(e, idx, s + st, strlen(s + st),
                                               "unterminated quoted string");
                    continue;
                }
                if (s[j] == '<')
                    return cmp_entry_error(e, idx, s + st, strlen(s + st), "'<' inside <...>");
                putc_(&en->angle, s[j]);
                j++;
            }
            if (s[j] != '>')
                return cmp_entry_error(e, idx, s + st, strlen(s + st), "missing '>'");
            en->has_angle = true;
            *i = j + 1;
            en->gap = true;
        } else if (c == '>') {
            return cmp_entry_error(e, idx, s + st, strlen(s + st), "'>' without '<'");
        } else if (c == ')') {
            return cmp_entry_error(e, idx, s + st, strlen(s + st), "')' without '('");
        } else {
            size_t j = *i;
            if (en->has_angle)
                return cmp_entry_error(e, idx, s + st, strlen(s + st),
                                       "text after the <address>");
            while (s[j] && !cmp_wsp(s[j]) && !strchr(",;\"()<>", s[j]))
                j++;
            cmp_name_piece(en, s + *i, j - *i);
            cmp_bare_piece(en, s + *i, j - *i);
            *i = j;
        }
    }
    return 0;
}

static char *cmp_trim_dup(const char *s, size_t n)
{
    while (n > 0 && cmp_wsp(*s)) {
        s++;
        n--;
    }
    while (n > 0 && cmp_wsp(s[n - 1]))
        n--;
    return xstrndup(s, n);
}

int compose_parse_addresses(const char *text, struct msg_addr_list *out, struct err *e)
{
    size_t n0 = out->n, i = 0, idx = 0;

    if (!text)
        return 0;
    if (strpbrk(text, "\r\n"))
        return err_set(e, ERR_INVAL, "address list: contains a line break");
    while (text[i]) {
        struct cmp_entry en;
        size_t st;
        char *name = NULL, *addr;
        const char *why;

        while (text[i] == ',' || text[i] == ';' || cmp_wsp(text[i]))
            i++;
        if (!text[i])
            break;
        st = i;
        idx++;
        memset(&en, 0, sizeof en);
        if (cmp_scan_entry(text, &i, idx, &en, e) < 0) {
            cmp_entry_free(&en);
            goto fail;
        }
        if (en.has_angle) {
            addr = cmp_trim_dup(buf_cstr(&en.angle), en.angle.len);
            name = cmp_trim_dup(buf_cstr(&en.name), en.name.len);
            if (!*name) {
                free(name);
                name = NULL;
            }
        } else {
            if (en.multiword) {
                cmp_entry_error(e, idx, text + st, i - st,
                                "several words: put the address in <...> or separate "
                                "addresses with ','");
                cmp_entry_free(&en);
                goto fail;
            }
            addr = xstrdup(buf_cstr(&en.bare));
            if (en.has_comment) {
                name = cmp_collapse(buf_cstr(&en.comment), en.comment.len);
                if (!*name) {
                    free(name);
                    name = NULL;
                }
            }
        }
        cmp_entry_free(&en);
        why = cmp_addr_problem(addr);
        if (!why && name && !charset_valid_utf8(name, strlen(name)))
            why = "display name is not valid UTF-8";
        if (why) {
            cmp_entry_error(e, idx, text + st, i - st, why);
            free(addr);
            free(name);
            goto fail;
        }
        compose_addrs_add(out, name, addr);
        free(addr);
        free(name);
    }
    return 0;

fail:
    while (out->n > n0) {
        out->n--;
        free(out->v[out->n].name);
        free(out->v[out->n].addr);
    }
    return -1;
}

/* ---- randomness, dates, ids --------------------------------------------- */

static int cmp_random(const struct compose_opts *o, unsigned char *p, size_t n, struct err *e)
{
    size_t got = 0;

    if (o && o->random) {
        o->random(o->random_ctx, p, n);
        return 0;
    }
    while (got < n) {
        ssize_t r = getrandom(p + got, n - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return err_sys(e, "no random bytes");
        got += (size_t)r;
    }
    return 0;
}

static bool cmp_valid_host(const char *h)
{
    size_t n, label = 0;

    if (!h)
        return false;
    n = strlen(h);
    if (n == 0 || n > 253 || h[0] == '.' || h[n - 1] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = h[i];
        if (c == '.') {
            if (label == 0 || h[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        if (!cmp_alnum((unsigned char)c) && c != '-')
            return false;
        if (c == '-' && label == 0)
            return false;
        if (++label > 63)
            return false;
    }
    return h[n - 1] != '-';
}

static void cmp_hostname(const struct compose_opts *o, char *dst, size_t size)
{
    char tmp[256];
    const char *h = o ? o->hostname : NULL;

    if (!h) {
        if (gethostname(tmp, sizeof tmp) == 0) {
            tmp[sizeof tmp - 1] = '\0';
            h = tmp;
        }
    }
    if (!cmp_valid_host(h))
        h = cmp_default_host;
    snprintf(dst, size, "%s", h);
}

static char *cmp_make_msgid(const struct compose_opts *o, time_t t, struct err *e)
{
    static const char alpha[] = "abcdefghijklmnopqrstuvwxyz234567";
    unsigned char rnd[16];
    char id[sizeof rnd + 1], host[256];

    if (cmp_random(o, rnd, sizeof rnd, e) < 0)
        return NULL;
    for (size_t i = 0; i < sizeof rnd; i++)
        id[i] = alpha[rnd[i] & 31];
    id[sizeof rnd] = '\0';
    cmp_hostname(o, host, sizeof host);
    return xasprintf("%s.%lld@%s", id, (long long)t, host);
}

int compose_prepare(struct compose_msg *m, const struct compose_opts *o, struct err *e)
{
    if (m->date == 0)
        m->date = time(NULL);
    if (!m->message_id) {
        m->message_id = cmp_make_msgid(o, m->date, e);
        if (!m->message_id)
            return -1;
    }
    return 0;
}

static int cmp_format_date(const struct compose_msg *m, time_t t, char *dst, size_t size,
                           struct err *e)
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    long off;

    if (m->tz_fixed) {
        time_t lt = t + (time_t)m->tz_minutes * 60;
        if (!gmtime_r(&lt, &tm))
            return err_set(e, ERR_INVAL, "Date: out of range");
        off = m->tz_minutes;
    } else {
        if (!localtime_r(&t, &tm))
            return err_set(e, ERR_INVAL, "Date: out of range");
        off = tm.tm_gmtoff / 60;
    }
    if (tm.tm_year + 1900 < 1900 || tm.tm_year + 1900 > 9999 || off <= -1440 || off >= 1440)
        return err_set(e, ERR_INVAL, "Date: out of range");
    snprintf(dst, size, "%s, %02d %s %04d %02d:%02d:%02d %c%02ld%02ld", days[tm.tm_wday],
             tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
             tm.tm_sec, off < 0 ? '-' : '+', labs(off) / 60, labs(off) % 60);
    return 0;
}

/* ---- header writer ------------------------------------------------------ */

/* Writes one field as tokens; a token preceded by blanks may move to a new
 * line (CRLF inserted before the blanks) when it would pass the width. */
struct hw {
    struct buf *out;
    size_t width;
    size_t col;
    bool has_value;     /* something follows "Name:" on the first line */
};

static void hw_start(struct hw *w, struct buf *out, size_t width, const char *name)
{
    w->out = out;
    w->width = width;
    w->col = strlen(name) + 1;
    w->has_value = false;
    puts_(out, name);
    putc_(out, ':');
}

static void hw_token(struct hw *w, const char *sep, size_t seplen, const char *t, size_t tlen)
{
    if (seplen > 0 && w->has_value && w->col + seplen + tlen > w->width) {
        puts_(w->out, "\r\n");
        w->col = 0;
    }
    put(w->out, sep, seplen);
    put(w->out, t, tlen);
    w->col += seplen + tlen;
    w->has_value = true;
}

static void hw_end(struct hw *w)
{
    puts_(w->out, "\r\n");
}

/* RFC 2047 "Q" in its most restrictive form (safe in phrases too). */
static bool ew_q_plain(unsigned char c)
{
    return cmp_alnum(c) || c == '!' || c == '*' || c == '+' || c == '-' || c == '/';
}

static size_t ew_q_cost(const char *s, size_t n)
{
    size_t k = 0;

    for (size_t i = 0; i < n; i++)
        k += ew_q_plain((unsigned char)s[i]) || s[i] == ' ' ? 1 : 3;
    return k;
}

static size_t ew_cost(bool b64, const char *s, size_t n)
{
    return b64 ? (n + 2) / 3 * 4 : ew_q_cost(s, n);
}

static void ew_word(struct buf *dst, bool b64, const char *s, size_t n)
{
    puts_(dst, b64 ? "=?UTF-8?B?" : "=?UTF-8?Q?");
    if (b64) {
        if (codec_b64_encode(s, n, dst) < 0)
            die("compose: unbounded buffer refused an append");
    } else {
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)s[i];
            if (ew_q_plain(c))
                putc_(dst, (char)c);
            else if (c == ' ')
                putc_(dst, '_');
            else
                printf_(dst, "=%02X", c);
        }
    }
    puts_(dst, "?=");
}

/* Write s[0..n) as encoded words; prefix is glued to the first word and
 * suffix to the last (for quoted parameter values). */
static void hw_encoded_ex(struct hw *w, const char *sep, size_t seplen, const char *s, size_t n,
                          const char *prefix, const char *suffix)
{
    bool b64 = ew_cost(true, s, n) < ew_q_cost(s, n);
    size_t maxw = w->width - 1 < CMP_EW_MAX ? w->width - 1 : CMP_EW_MAX;
    size_t i = 0, plen = strlen(prefix), slen = strlen(suffix);
    struct buf word = BUF_INIT;
    bool first = true;

    while (i < n || first) {
        const char *sp = first ? sep : " ";
        size_t spl = first ? seplen : 1;
        size_t extra = (first ? plen : 0) + slen;
        size_t room = w->width > w->col + spl ? w->width - w->col - spl : 0;
        size_t least = CMP_EW_OVERHEAD + 12 + extra;   /* a few characters */
        size_t j = i, cap;

        /* fill the current line, or size the word for a new one */
        if (room < least)
            room = w->width > spl + least ? w->width - spl : w->width - 1;
        cap = room - extra < maxw ? room - extra : maxw;
        while (j < n) {
            size_t k = cmp_u8len(s + j, n - j);
            if (j > i && CMP_EW_OVERHEAD + ew_cost(b64, s + i, j + k - i) > cap)
                break;
            j += k;
        }
        buf_reset(&word);
        if (first)
            puts_(&word, prefix);
        ew_word(&word, b64, s + i, j - i);
        if (j >= n)
            puts_(&word, suffix);
        hw_token(w, sp, spl, buf_cstr(&word), word.len);
        i = j;
        first = false;
    }
    buf_free(&word);
}

static void hw_encoded(struct hw *w, const char *sep, size_t seplen, const char *s, size_t n)
{
    hw_encoded_ex(w, sep, seplen, s, n, "", "");
}

/* Does this word of unstructured text or phrase need encoding? */
static bool cmp_word_needs_ew(const char *s, size_t n)
{
    if (n > CMP_WORD_MAX)
        return true;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c >= 0x7f)
            return true;
        if (c == '=' && i + 1 < n && s[i + 1] == '?')
            return true;
    }
    return false;
}

struct cmp_word {
    size_t start, len;    /* the word */
    size_t gap;           /* blanks before it */
    bool enc;
};

/* Split s into blank-separated words; returns the count (v is new). */
static size_t cmp_split_words(const char *s, size_t n, struct cmp_word **v, size_t *trail)
{
    size_t i = 0, k = 0;

    *v = NULL;
    while (i < n) {
        size_t g = i, st;
        while (i < n && cmp_wsp(s[i]))
            i++;
        if (i >= n) {
            *trail = i - g;
            return k;
        }
        st = i;
        while (i < n && !cmp_wsp(s[i]))
            i++;
        *v = xreallocarray(*v, k + 1, sizeof **v);
        (*v)[k].start = st;
        (*v)[k].len = i - st;
        (*v)[k].gap = st - g;
        (*v)[k].enc = false;
        k++;
    }
    *trail = 0;
    return k;
}

/* Unstructured text (RFC 5322 3.2.5): plain words stay readable, runs of
 * words that need it become encoded words, and the blanks between two
 * encoded words go inside them (a decoder drops blanks between words). */
static void hw_unstructured(struct hw *w, const char *s)
{
    size_t n = strlen(s), trail, k;
    struct cmp_word *v;

    if (n == 0)
        return;
    k = cmp_split_words(s, n, &v, &trail);
    if (k == 0) {
        hw_encoded(w, " ", 1, s, n);
        return;
    }
    for (size_t i = 0; i < k; i++)
        v[i].enc = cmp_word_needs_ew(s + v[i].start, v[i].len);
    if (v[0].gap > 0)
        v[0].enc = true;
    if (trail > 0)
        v[k - 1].enc = true;
    for (size_t i = 1; i < k; i++)
        if (v[i].gap > CMP_GAP_MAX)
            v[i - 1].enc = v[i].enc = true;
    for (size_t i = 0; i < k;) {
        const char *sep = i == 0 ? " " : s + v[i].start - v[i].gap;
        size_t seplen = i == 0 ? 1 : v[i].gap, j, a, b;
        if (!v[i].enc) {
            hw_token(w, sep, seplen, s + v[i].start, v[i].len);
            i++;
            continue;
        }
        for (j = i; j + 1 < k && v[j + 1].enc; j++)
            ;
        a = i == 0 ? 0 : v[i].start;
        b = j == k - 1 ? n : v[j].start + v[j].len;
        hw_encoded(w, sep, seplen, s + a, b - a);
        i = j + 1;
    }
    free(v);
}

/* A display name: bare words, one quoted string, or (when anything would be
 * lost or misread otherwise) encoded words for all of it. */
static void hw_phrase(struct hw *w, const char *name)
{
    size_t n = strlen(name), trail, k;
    struct cmp_word *v;
    bool enc = false, atoms = true;
    struct buf t = BUF_INIT;

    k = cmp_split_words(name, n, &v, &trail);
    if (k == 0 || v[0].gap > 0 || trail > 0)
        enc = true;
    for (size_t i = 0; i < k && !enc; i++) {
        const char *p = name + v[i].start;
        size_t esc = 0;
        if (i > 0 && (v[i].gap != 1 || name[v[i].start - 1] != ' '))
            atoms = false;
        for (size_t j = 0; j < v[i].len; j++) {
            if (!cmp_atext((unsigned char)p[j]))
                atoms = false;
            esc += p[j] == '"' || p[j] == '\\';
        }
        if (cmp_word_needs_ew(p, v[i].len) || v[i].gap > CMP_GAP_MAX ||
            v[i].len + esc + 2 > CMP_WORD_MAX)
            enc = true;
    }
    if (enc) {
        hw_encoded(w, " ", 1, name, n);
    } else {
        for (size_t i = 0; i < k; i++) {
            const char *p = name + v[i].start;
            buf_reset(&t);
            if (!atoms && i == 0)
                putc_(&t, '"');
            for (size_t j = 0; j < v[i].len; j++) {
                if (!atoms && (p[j] == '"' || p[j] == '\\'))
                    putc_(&t, '\\');
                putc_(&t, p[j]);
            }
            if (!atoms && i == k - 1)
                putc_(&t, '"');
            hw_token(w, i == 0 ? " " : p - v[i].gap, i == 0 ? 1 : v[i].gap, buf_cstr(&t),
                     t.len);
        }
    }
    buf_free(&t);
    free(v);
}

static void hw_addresses(struct buf *out, size_t width, const char *field,
                         const struct msg_addr_list *l)
{
    struct hw w;
    struct buf t = BUF_INIT;

    if (l->n == 0)
        return;
    hw_start(&w, out, width, field);
    for (size_t i = 0; i < l->n; i++) {
        const struct msg_addr *a = &l->v[i];
        bool named = a->name && a->name[0];
        buf_reset(&t);
        if (named)
            hw_phrase(&w, a->name);
        printf_(&t, named ? "<%s>%s" : "%s%s", a->addr, i + 1 < l->n ? "," : "");
        hw_token(&w, " ", 1, buf_cstr(&t), t.len);
    }
    hw_end(&w);
    buf_free(&t);
}

static void hw_ids(struct buf *out, size_t width, const char *field, char *const *ids, size_t n)
{
    struct hw w;
    struct buf t = BUF_INIT;

    if (n == 0)
        return;
    hw_start(&w, out, width, field);
    for (size_t i = 0; i < n; i++) {
        buf_reset(&t);
        printf_(&t, "<%s>", ids[i]);
        hw_token(&w, " ", 1, buf_cstr(&t), t.len);
    }
    hw_end(&w);
    buf_free(&t);
}

static void hw_simple(struct buf *out, const char *name, const char *value)
{
    printf_(out, "%s: %s\r\n", name, value);
}

static void hw_text_field(struct buf *out, size_t width, const char *name, const char *value)
{
    struct hw w;

    hw_start(&w, out, width, name);
    hw_unstructured(&w, value);
    hw_end(&w);
}

/* ---- MIME parameters ---------------------------------------------------- */

static bool cmp_is_token(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!cmp_tchar((unsigned char)*s))
            return false;
    return true;
}

/* name=value as a token or a quoted string (value is printable ASCII). */
static void hw_param(struct hw *w, const char *name, const char *value, bool last)
{
    struct buf t = BUF_INIT;

    printf_(&t, "%s=", name);
    if (cmp_is_token(value)) {
        puts_(&t, value);
    } else {
        putc_(&t, '"');
        for (const char *p = value; *p; p++) {
            if (*p == '"' || *p == '\\')
                putc_(&t, '\\');
            putc_(&t, *p);
        }
        putc_(&t, '"');
    }
    if (!last)
        putc_(&t, ';');
    hw_token(w, " ", 1, buf_cstr(&t), t.len);
    buf_free(&t);
}

static bool cmp_plain_param(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > CMP_PLAIN_PARAM_MAX || cmp_wsp(s[0]) || cmp_wsp(s[n - 1]))
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c >= 0x7f || (c == '=' && s[i + 1] == '?'))
            return false;
    }
    return true;
}

/* RFC 5987 attr-char: left as is in an extended value. */
static bool cmp_attr_char(unsigned char c)
{
    return cmp_alnum(c) || (c && strchr("!#$&+-.^_`|~", c));
}

/* filename*=utf-8''... in one piece or as continuations filename*N*=. */
static void hw_param_2231(struct hw *w, const char *name, const char *value, bool last)
{
    struct buf pct = BUF_INIT, t = BUF_INIT;
    size_t seg_max, i = 0, idx = 0;

    /* utf-8'' + %XX escapes; sections never split an escape */

    puts_(&pct, "utf-8''");
    for (const char *p = value; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (cmp_attr_char(c))
            putc_(&pct, (char)c);
        else
            printf_(&pct, "%%%02X", c);
    }
    if (strlen(name) + 2 + pct.len + 1 + 1 <= w->width) {
        printf_(&t, "%s*=%s%s", name, buf_cstr(&pct), last ? "" : ";");
        hw_token(w, " ", 1, buf_cstr(&t), t.len);
        buf_free(&t);
        buf_free(&pct);
        return;
    }
    /* " name*NNN*=" + value + ";" within the width */
    seg_max = w->width - 1 - (strlen(name) + 6) - 1;
    while (i < pct.len) {
        size_t j = i, take;
        while (j < pct.len && j - i < seg_max) {
            size_t k = pct.data[j] == '%' ? 3 : 1;
            if (j + k - i > seg_max && j > i)
                break;
            j += k;
        }
        take = j - i;
        buf_reset(&t);
        printf_(&t, "%s*%zu*=", name, idx);
        put(&t, pct.data + i, take);
        if (!last || i + take < pct.len)
            putc_(&t, ';');
        hw_token(w, " ", 1, buf_cstr(&t), t.len);
        i += take;
        idx++;
    }
    buf_free(&t);
    buf_free(&pct);
}

/* name="..." for readers without RFC 2231: plain when short ASCII, else
 * RFC 2047 words inside the quotes (what most mail programs read). */
static void hw_param_2047(struct hw *w, const char *name, const char *value, bool last)
{
    char *prefix;

    if (cmp_plain_param(value)) {
        hw_param(w, name, value, last);
        return;
    }
    prefix = xasprintf("%s=\"", name);
    hw_encoded_ex(w, " ", 1, value, strlen(value), prefix, last ? "\"" : "\";");
    free(prefix);
}

static void hw_filename(struct hw *w, const char *name, const char *value, bool last)
{
    if (cmp_plain_param(value))
        hw_param(w, name, value, last);
    else
        hw_param_2231(w, name, value, last);
}

/* ---- body encodings ----------------------------------------------------- */

enum cmp_cte { CTE_7BIT, CTE_8BIT, CTE_QP, CTE_B64, CTE_BINARY };

static const char *const cmp_cte_names[] = {"7bit", "8bit", "quoted-printable", "base64",
                                            "binary"};

struct cmp_scan {
    bool ascii;        /* no byte >= 0x80 */
    bool utf8;         /* valid UTF-8 */
    bool nul;
    bool bare_cr;      /* CR not followed by LF */
    size_t max_line;   /* longest line in bytes, line break excluded */
};

static void cmp_scan_text(const char *s, size_t n, struct cmp_scan *sc)
{
    size_t line = 0;

    memset(sc, 0, sizeof *sc);
    sc->ascii = true;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n' || (c == '\r' && i + 1 < n && s[i + 1] == '\n')) {
            if (line > sc->max_line)
                sc->max_line = line;
            line = 0;
            if (c == '\r')
                i++;
            continue;
        }
        if (c >= 0x80)
            sc->ascii = false;
        else if (c == 0)
            sc->nul = true;
        else if (c == '\r')
            sc->bare_cr = true;
        line++;
    }
    if (line > sc->max_line)
        sc->max_line = line;
    sc->utf8 = sc->ascii || charset_valid_utf8(s, n);
}

static enum cmp_cte cmp_text_cte(const struct cmp_scan *sc, bool eightbit_ok)
{
    if (sc->nul || sc->bare_cr || sc->max_line > CMP_LINE_MAX)
        return CTE_QP;
    if (sc->ascii)
        return CTE_7BIT;
    if (sc->utf8 && eightbit_ok)
        return CTE_8BIT;
    return CTE_QP;
}

/* Copy text with every line break (LF or CRLF) as CRLF. */
static void cmp_put_crlf(struct buf *out, const char *s, size_t n)
{
    size_t run = 0;

    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\n')
            continue;
        size_t end = i > run && s[i - 1] == '\r' ? i - 1 : i;
        put(out, s + run, end - run);
        puts_(out, "\r\n");
        run = i + 1;
    }
    put(out, s + run, n - run);
}

/* Quoted-printable (RFC 2045 6.7): lines of at most 76 characters, soft
 * breaks never inside an escape or a UTF-8 character, trailing blanks and
 * "From " at a line start escaped. */
static void cmp_qp_encode(struct buf *out, const char *s, size_t n)
{
    size_t i = 0, col = 0;

    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        char rep[16];
        size_t rl = 0, take = 1;
        bool line_end;

        if (c == '\n' || (c == '\r' && i + 1 < n && s[i + 1] == '\n')) {
            puts_(out, "\r\n");
            col = 0;
            i += c == '\r' ? 2 : 1;
            continue;
        }
        if (c >= 0xc0)
            take = cmp_u8len(s + i, n - i);
        line_end = i + take >= n || s[i + take] == '\n' ||
                   (s[i + take] == '\r' && i + take + 1 < n && s[i + take + 1] == '\n');
        for (;;) {
            rl = 0;
            if (take > 1 || c >= 0x7f || (c < 0x20 && c != '\t') || c == '=' ||
                (cmp_wsp((char)c) && line_end) ||
                (c == 'F' && col == 0 && n - i >= 5 && memcmp(s + i, "From ", 5) == 0)) {
                for (size_t k = 0; k < take; k++) {
                    snprintf(rep + rl, sizeof rep - rl, "=%02X", (unsigned char)s[i + k]);
                    rl += 3;
                }
            } else {
                rep[rl++] = (char)c;
            }
            /* the last item of a line may use column 76, others leave room
             * for the soft break's '=' */
            if (col > 0 && col + rl > (line_end ? CMP_QP_LINE : CMP_QP_LINE - 1)) {
                puts_(out, "=\r\n");
                col = 0;
                continue;    /* col changed: "From " may now apply */
            }
            break;
        }
        put(out, rep, rl);
        col += rl;
        i += take;
    }
}

static void cmp_b64_lines(struct buf *out, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i += CMP_B64_LINE_BYTES) {
        size_t k = n - i < CMP_B64_LINE_BYTES ? n - i : CMP_B64_LINE_BYTES;
        if (i > 0)
            puts_(out, "\r\n");
        if (codec_b64_encode(s + i, k, out) < 0)
            die("compose: unbounded buffer refused an append");
    }
}

static void cmp_encode(struct buf *out, enum cmp_cte cte, const char *s, size_t n)
{
    switch (cte) {
    case CTE_7BIT:
    case CTE_8BIT:
    case CTE_BINARY:
        cmp_put_crlf(out, s, n);
        break;
    case CTE_QP:
        cmp_qp_encode(out, s, n);
        break;
    case CTE_B64:
        cmp_b64_lines(out, s, n);
        break;
    }
}

/* ---- format=flowed (RFC 3676) ------------------------------------------- */

static void cmp_flowed_line(struct buf *out, const char *line, size_t n, size_t width)
{
    size_t depth = 0, avail, i = 0;
    struct buf prefix = BUF_INIT;

    if (n == 3 && memcmp(line, "-- ", 3) == 0) {   /* signature separator */
        puts_(out, "-- \n");
        return;
    }
    while (depth < n && line[depth] == '>')
        depth++;
    line += depth;
    n -= depth;
    if (depth > 0 && n > 0 && line[0] == ' ') {
        line++;
        n--;
    }
    while (n > 0 && line[n - 1] == ' ')
        n--;
    for (size_t k = 0; k < depth; k++)
        putc_(&prefix, '>');
    if (depth > 0 && n > 0)
        putc_(&prefix, ' ');
    avail = width > prefix.len + 10 ? width - prefix.len : 10;
    do {
        /* the longest run of pieces "[blanks]word blanks" that fits */
        size_t j = i, best = 0;
        bool stuff = depth == 0 && i < n &&
                     (line[i] == ' ' || line[i] == '>' ||
                      (n - i >= 5 && memcmp(line + i, "From ", 5) == 0));
        while (j < n) {
            size_t k = j;
            while (k < n && line[k] == ' ')
                k++;
            while (k < n && line[k] != ' ')
                k++;
            while (k < n && line[k] == ' ')
                k++;
            if (best && cmp_u8count(line + i, k - i) + stuff > avail)
                break;
            best = k;
            j = k;
        }
        if (best == 0)
            best = n;
        put(out, prefix.data ? prefix.data : "", prefix.len);
        if (stuff)
            putc_(out, ' ');
        put(out, line + i, best - i);
        putc_(out, '\n');
        i = best;
    } while (i < n);
    buf_free(&prefix);
}

static void cmp_flowed(struct buf *out, const char *s, size_t n, size_t width)
{
    size_t st = 0;

    while (st < n) {
        const char *nl = memchr(s + st, '\n', n - st);
        size_t end = nl ? (size_t)(nl - s) : n, len = end - st;
        if (len > 0 && s[end - 1] == '\r')
            len--;
        cmp_flowed_line(out, s + st, len, width);
        st = end + 1;
    }
}

/* ---- parts -------------------------------------------------------------- */

struct cmp_part {
    struct buf data;        /* headers, blank line and encoded body */
    enum cmp_cte cte;
};

/* Body text: normalised (final line break, optional flowed) into text;
 * returns the CTE and sets *charset. */
static enum cmp_cte cmp_body_text(const struct compose_msg *m, const struct compose_opts *o,
                                  size_t flowed_width, struct buf *text, const char **charset)
{
    const char *b = m->body ? m->body : "";
    size_t n = strlen(b);
    struct cmp_scan sc;

    if (m->flowed) {
        cmp_flowed(text, b, n, flowed_width);
    } else {
        put(text, b, n);
        if (n > 0 && b[n - 1] != '\n')
            putc_(text, '\n');
    }
    cmp_scan_text(buf_cstr(text), text->len, &sc);
    *charset = sc.ascii ? "us-ascii" : "utf-8";
    return cmp_text_cte(&sc, o->eightbit_ok);
}

static void cmp_type_token(struct hw *w, const char *type, bool more)
{
    char *t = xasprintf("%s%s", type, more ? ";" : "");
    hw_token(w, " ", 1, t, strlen(t));
    free(t);
}

static void cmp_text_ctype(struct buf *out, size_t width, const char *charset, bool flowed)
{
    struct hw w;

    hw_start(&w, out, width, "Content-Type");
    cmp_type_token(&w, "text/plain", true);
    hw_param(&w, "charset", charset, !flowed);
    if (flowed)
        hw_param(&w, "format", "flowed", true);
    hw_end(&w);
}

static void cmp_body_part(const struct compose_msg *m, const struct compose_opts *o,
                          size_t width, size_t flowed_width, struct cmp_part *p)
{
    struct buf text = BUF_INIT;
    const char *charset;

    buf_init(&p->data, 0);
    p->cte = cmp_body_text(m, o, flowed_width, &text, &charset);
    cmp_text_ctype(&p->data, width, charset, m->flowed);
    hw_simple(&p->data, "Content-Disposition", "inline");
    hw_simple(&p->data, "Content-Transfer-Encoding", cmp_cte_names[p->cte]);
    puts_(&p->data, "\r\n");
    cmp_encode(&p->data, p->cte, buf_cstr(&text), text.len);
    buf_free(&text);
}

static void cmp_attachment_part(const struct compose_attachment *a, const struct compose_opts *o,
                                size_t width, struct cmp_part *p)
{
    const char *data = a->data ? a->data : "";
    char *type = a->is_message ? xstrdup("message/rfc822")
                 : a->mime_type ? cmp_norm_type(a->mime_type)
                                : xstrdup("application/octet-stream");
    bool is_message = a->is_message || strcmp(type, "message/rfc822") == 0;
    bool text = strncmp(type, "text/", 5) == 0;
    const char *charset = NULL;
    const char *fname = a->filename && a->filename[0] ? a->filename : NULL;
    struct cmp_scan sc;
    struct hw w;

    buf_init(&p->data, 0);
    cmp_scan_text(data, a->len, &sc);
    if (is_message) {
        /* RFC 2046 5.2.1: never base64 or quoted-printable */
        if (sc.ascii && !sc.nul && !sc.bare_cr && sc.max_line <= CMP_LINE_MAX)
            p->cte = CTE_7BIT;
        else if (!sc.nul && !sc.bare_cr && sc.max_line <= CMP_LINE_MAX)
            p->cte = CTE_8BIT;
        else
            p->cte = CTE_BINARY;
    } else if (text && sc.utf8 && !sc.nul) {
        p->cte = cmp_text_cte(&sc, o->eightbit_ok);
        charset = sc.ascii ? "us-ascii" : "utf-8";
    } else {
        p->cte = CTE_B64;
    }
    hw_start(&w, &p->data, width, "Content-Type");
    if (charset) {
        cmp_type_token(&w, type, true);
        hw_param(&w, "charset", charset, !fname);
    } else {
        cmp_type_token(&w, type, fname != NULL);
    }
    if (fname)
        hw_param_2047(&w, "name", fname, true);
    hw_end(&w);
    hw_start(&w, &p->data, width, "Content-Disposition");
    cmp_type_token(&w, a->disposition == COMPOSE_DISP_INLINE ? "inline" : "attachment",
                   fname != NULL);
    if (fname)
        hw_filename(&w, "filename", fname, true);
    hw_end(&w);
    if (a->description && a->description[0])
        hw_text_field(&p->data, width, "Content-Description", a->description);
    hw_simple(&p->data, "Content-Transfer-Encoding", cmp_cte_names[p->cte]);
    puts_(&p->data, "\r\n");
    cmp_encode(&p->data, p->cte, data, a->len);
    free(type);
}

/* A boundary that occurs in no part (so no line of a part can be read as a
 * delimiter).  "=_" cannot occur in base64 and only as a broken escape in
 * quoted-printable, which makes a clash unlikely from the start. */
static int cmp_boundary(const struct compose_opts *o, const struct cmp_part *parts, size_t n,
                        char *dst, size_t size, struct err *e)
{
    static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

    for (int tries = 0; tries < CMP_BOUNDARY_TRIES; tries++) {
        unsigned char rnd[CMP_BOUNDARY_RANDOM];
        size_t k = 0;
        bool clash = false;

        if (cmp_random(o, rnd, sizeof rnd, e) < 0)
            return -1;
        k = (size_t)snprintf(dst, size, "=_correo_");
        for (size_t i = 0; i < sizeof rnd && k + 1 < size; i++)
            dst[k++] = alpha[rnd[i] % (sizeof alpha - 1)];
        dst[k] = '\0';
        for (size_t i = 0; i < n && !clash; i++)
            clash = memmem(buf_cstr(&parts[i].data), parts[i].data.len, dst, k) != NULL;
        if (!clash)
            return 0;
    }
    return err_set(e, ERR_LIMIT, "no MIME boundary found that is absent from the content");
}

/* ---- rendering ---------------------------------------------------------- */

static int cmp_opts(const struct compose_opts *o, size_t *width, size_t *fwidth, struct err *e)
{
    *width = o->fold_width ? o->fold_width : COMPOSE_FOLD_WIDTH;
    *fwidth = o->flowed_width ? o->flowed_width : COMPOSE_FLOWED_WIDTH;
    if (*width < 40 || *width > CMP_LINE_MAX)
        return err_set(e, ERR_INVAL, "fold width %zu outside 40..998", *width);
    if (*fwidth < 20 || *fwidth > CMP_LINE_MAX)
        return err_set(e, ERR_INVAL, "flowed width %zu outside 20..998", *fwidth);
    return 0;
}

static void cmp_to_lf(struct buf *b)
{
    size_t k = 0;

    for (size_t i = 0; i < b->len; i++) {
        if (b->data[i] == '\r' && i + 1 < b->len && b->data[i + 1] == '\n')
            continue;
        b->data[k++] = b->data[i];
    }
    buf_truncate(b, k);
}

static void cmp_parts_free(struct cmp_part *parts, size_t n)
{
    for (size_t i = 0; i < n; i++)
        buf_free(&parts[i].data);
    free(parts);
}

/* Everything but the MIME fields and the body. */
static int cmp_envelope_fields(const struct compose_msg *m, const struct compose_opts *o,
                               size_t width, struct buf *h, struct err *e)
{
    time_t t = m->date ? m->date : time(NULL);
    char date[64];
    char *id = NULL;

    if (cmp_format_date(m, t, date, sizeof date, e) < 0)
        return -1;
    if (!m->message_id) {
        id = cmp_make_msgid(o, t, e);
        if (!id)
            return -1;
    }
    hw_simple(h, "Date", date);
    hw_addresses(h, width, "From", &m->from);
    hw_addresses(h, width, "To", &m->to);
    hw_addresses(h, width, "Cc", &m->cc);
    if (o->with_bcc)
        hw_addresses(h, width, "Bcc", &m->bcc);
    if (m->subject)
        hw_text_field(h, width, "Subject", m->subject);
    {
        char *ids[1] = {id ? id : m->message_id};
        hw_ids(h, width, "Message-ID", ids, 1);
    }
    if (m->in_reply_to)
        hw_ids(h, width, "In-Reply-To", &m->in_reply_to, 1);
    hw_ids(h, width, "References", m->references, m->n_references);
    hw_addresses(h, width, "Reply-To", &m->reply_to);
    hw_simple(h, "MIME-Version", "1.0");
    free(id);
    return 0;
}

static void cmp_extra_fields(const struct compose_msg *m, size_t width, struct buf *h)
{
    for (size_t i = 0; i < m->n_headers; i++)
        hw_text_field(h, width, m->headers[i].name, m->headers[i].value);
}

int compose_render(const struct compose_msg *m, const struct compose_opts *o,
                   struct buf *out, struct err *e)
{
    static const struct compose_opts defaults;
    struct buf msg = BUF_INIT;
    struct cmp_part *parts = NULL;
    size_t width, fwidth, np = 0;
    bool has_text = m->body && m->body[0];
    int rc = -1;

    if (!o)
        o = &defaults;
    if (cmp_opts(o, &width, &fwidth, e) < 0 || compose_check(m, e) < 0)
        return -1;
    if (cmp_envelope_fields(m, o, width, &msg, e) < 0)
        goto done;
    if (m->n_attachments == 0) {
        struct buf text = BUF_INIT;
        const char *charset;
        enum cmp_cte cte = cmp_body_text(m, o, fwidth, &text, &charset);

        cmp_text_ctype(&msg, width, charset, m->flowed);
        hw_simple(&msg, "Content-Transfer-Encoding", cmp_cte_names[cte]);
        cmp_extra_fields(m, width, &msg);
        puts_(&msg, "\r\n");
        cmp_encode(&msg, cte, buf_cstr(&text), text.len);
        buf_free(&text);
    } else {
        enum cmp_cte top = CTE_7BIT;
        char boundary[64];
        struct hw w;

        parts = xcalloc(m->n_attachments + 1, sizeof *parts);
        if (has_text)
            cmp_body_part(m, o, width, fwidth, &parts[np++]);
        for (size_t i = 0; i < m->n_attachments; i++)
            cmp_attachment_part(&m->attachments[i], o, width, &parts[np++]);
        for (size_t i = 0; i < np; i++) {
            enum cmp_cte c = parts[i].cte;
            if (c == CTE_BINARY)
                top = CTE_BINARY;
            else if (c == CTE_8BIT && top == CTE_7BIT)
                top = CTE_8BIT;
        }
        if (cmp_boundary(o, parts, np, boundary, sizeof boundary, e) < 0)
            goto done;
        hw_start(&w, &msg, width, "Content-Type");
        cmp_type_token(&w, "multipart/mixed", true);
        hw_param(&w, "boundary", boundary, true);
        hw_end(&w);
        hw_simple(&msg, "Content-Transfer-Encoding", cmp_cte_names[top]);
        cmp_extra_fields(m, width, &msg);
        puts_(&msg, "\r\n");
        for (size_t i = 0; i < np; i++) {
            printf_(&msg, "--%s\r\n", boundary);
            put(&msg, buf_cstr(&parts[i].data), parts[i].data.len);
            puts_(&msg, "\r\n");
        }
        printf_(&msg, "--%s--\r\n", boundary);
    }
    if (o->lf)
        cmp_to_lf(&msg);
    if (buf_append(out, buf_cstr(&msg), msg.len) < 0) {
        err_set(e, ERR_LIMIT, "message of %zu bytes larger than the limit", msg.len);
        goto done;
    }
    rc = 0;

done:
    cmp_parts_free(parts, np);
    buf_free(&msg);
    return rc;
}

/* ---- envelope ----------------------------------------------------------- */

static void cmp_add_rcpts(const struct msg_addr_list *l, char ***v, size_t *n)
{
    for (size_t i = 0; i < l->n; i++) {
        bool dup = false;
        for (size_t k = 0; k < *n && !dup; k++)
            dup = strcasecmp((*v)[k], l->v[i].addr) == 0;
        if (dup)
            continue;
        *v = xreallocarray(*v, *n + 1, sizeof **v);
        (*v)[(*n)++] = xstrdup(l->v[i].addr);
    }
}

int compose_envelope(const struct compose_msg *m, char **from, char ***rcpts,
                     size_t *n_rcpts, struct err *e)
{
    *from = NULL;
    *rcpts = NULL;
    *n_rcpts = 0;
    if (cmp_check_addrs("From", &m->from, e) < 0 || cmp_check_addrs("To", &m->to, e) < 0 ||
        cmp_check_addrs("Cc", &m->cc, e) < 0 || cmp_check_addrs("Bcc", &m->bcc, e) < 0)
        return -1;
    if (m->from.n == 0)
        return err_set(e, ERR_INVAL, "From: no address");
    cmp_add_rcpts(&m->to, rcpts, n_rcpts);
    cmp_add_rcpts(&m->cc, rcpts, n_rcpts);
    cmp_add_rcpts(&m->bcc, rcpts, n_rcpts);
    if (*n_rcpts == 0)
        return err_set(e, ERR_INVAL, "no recipients");
    *from = xstrdup(m->from.v[0].addr);
    return 0;
}

bool compose_is_8bit(const char *data, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)data[i] >= 0x80)
            return true;
    return false;
}
