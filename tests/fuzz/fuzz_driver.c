/*
 * fuzz_driver: a main() for the fuzz targets where libFuzzer is not
 * available (the normal gcc build), so that they run briefly in the test
 * suite.
 *
 *   fuzz_driver [-n MUTATIONS] [-t SECONDS] [-s SEED] [-d DICT] PATH...
 *
 * Each PATH is a seed file or a directory of them (not recursive).  Every
 * seed is run as is, then the driver runs MUTATIONS (default 2000) inputs
 * made from the seeds by a pseudo-random generator with a fixed SEED, so a
 * failure is reproducible: the input that is about to run is written to
 * $FUZZ_DRIVER_LAST when that variable is set.  It stops early after
 * SECONDS (default 20) of mutations.  Mutations: flip a bit, set a byte,
 * insert or delete bytes, duplicate or move a slice, splice two seeds,
 * insert a token from DICT (the libFuzzer dictionary syntax: one quoted
 * string with \xHH escapes a line) or from a few built-in ones.
 */
#include <errno.h>
#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

#define DRIVER_MAX_INPUT (256 * 1024)
#define MAX_SEEDS 4096

struct blob {
    uint8_t *p;
    size_t n;
};

static struct blob seeds[MAX_SEEDS];
static size_t n_seeds;
static struct blob tokens[512];
static size_t n_tokens;
static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static size_t below(size_t n)
{
    return n ? (size_t)(rnd() % n) : 0;
}

static void *xmalloc_or_die(size_t n)
{
    void *p = malloc(n ? n : 1);

    if (!p) {
        fprintf(stderr, "fuzz_driver: out of memory\n");
        exit(2);
    }
    return p;
}

static int read_file(const char *path, struct blob *b)
{
    FILE *fp = fopen(path, "rb");
    size_t n;

    if (!fp)
        return -1;
    b->p = xmalloc_or_die(DRIVER_MAX_INPUT);
    n = fread(b->p, 1, DRIVER_MAX_INPUT, fp);
    if (ferror(fp)) {
        fclose(fp);
        free(b->p);
        return -1;
    }
    fclose(fp);
    b->n = n;
    return 0;
}

static void add_seed(const char *path)
{
    if (n_seeds == MAX_SEEDS)
        return;
    if (read_file(path, &seeds[n_seeds]) < 0) {
        fprintf(stderr, "fuzz_driver: %s: %s\n", path, strerror(errno));
        exit(2);
    }
    n_seeds++;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void add_path(const char *path)
{
    struct stat st;
    DIR *d;
    struct dirent *de;
    char **names = NULL;
    size_t n = 0, cap = 0;

    if (stat(path, &st) < 0) {
        fprintf(stderr, "fuzz_driver: %s: %s\n", path, strerror(errno));
        exit(2);
    }
    if (!S_ISDIR(st.st_mode)) {
        add_seed(path);
        return;
    }
    d = opendir(path);
    if (!d) {
        fprintf(stderr, "fuzz_driver: %s: %s\n", path, strerror(errno));
        exit(2);
    }
    /* sorted, so the order (and so the mutations) never depend on the
     * file system */
    while ((de = readdir(d))) {
        size_t len;
        if (de->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            names = realloc(names, cap * sizeof(*names));
            if (!names)
                exit(2);
        }
        len = strlen(path) + strlen(de->d_name) + 2;
        names[n] = xmalloc_or_die(len);
        snprintf(names[n], len, "%s/%s", path, de->d_name);
        n++;
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof(*names), cmp_str);
    for (size_t i = 0; i < n; i++) {
        if (stat(names[i], &st) == 0 && S_ISREG(st.st_mode))
            add_seed(names[i]);
        free(names[i]);
    }
    free(names);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static void add_token(const uint8_t *p, size_t n)
{
    if (n_tokens == sizeof(tokens) / sizeof(tokens[0]) || n == 0)
        return;
    tokens[n_tokens].p = xmalloc_or_die(n);
    memcpy(tokens[n_tokens].p, p, n);
    tokens[n_tokens].n = n;
    n_tokens++;
}

/* libFuzzer dictionary: [name=]"value" lines, # comments. */
static void load_dict(const char *path)
{
    FILE *fp = fopen(path, "r");
    char line[1024];

    if (!fp) {
        fprintf(stderr, "fuzz_driver: %s: %s\n", path, strerror(errno));
        exit(2);
    }
    while (fgets(line, sizeof(line), fp)) {
        char *q = strchr(line, '"');
        uint8_t tok[512];
        size_t n = 0;
        if (line[0] == '#' || !q)
            continue;
        for (q++; *q && *q != '"' && n < sizeof(tok); q++) {
            if (*q == '\\' && q[1] == 'x' && hexval(q[2]) >= 0 && hexval(q[3]) >= 0) {
                tok[n++] = (uint8_t)(hexval(q[2]) * 16 + hexval(q[3]));
                q += 3;
            } else if (*q == '\\' && q[1]) {
                tok[n++] = (uint8_t)*++q;
            } else {
                tok[n++] = (uint8_t)*q;
            }
        }
        add_token(tok, n);
    }
    fclose(fp);
}

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void run_one(const uint8_t *p, size_t n)
{
    const char *last = getenv("FUZZ_DRIVER_LAST");
    uint8_t *copy;

    if (last && *last) {
        FILE *fp = fopen(last, "wb");
        if (fp) {
            if (fwrite(p, 1, n, fp) != n)
                fprintf(stderr, "fuzz_driver: short write to %s\n", last);
            fclose(fp);
        }
    }
    /* a copy of exactly n bytes, so that reads past the end are caught */
    copy = xmalloc_or_die(n);
    if (n)
        memcpy(copy, p, n);
    LLVMFuzzerTestOneInput(copy, n);
    free(copy);
}

/* Make one mutated input from the seeds into buf; returns its length. */
static size_t mutate(uint8_t *buf, size_t cap)
{
    const struct blob *s = &seeds[below(n_seeds)];
    size_t n = s->n < cap ? s->n : cap;
    unsigned rounds = 1 + (unsigned)below(4);

    memcpy(buf, s->p, n);
    for (unsigned r = 0; r < rounds; r++) {
        size_t at = below(n + 1), len;
        switch (below(8)) {
        case 0: /* flip a bit */
            if (n)
                buf[below(n)] ^= (uint8_t)(1u << below(8));
            break;
        case 1: /* set a byte to something interesting */
            if (n) {
                static const uint8_t v[] = {0, '\r', '\n', '.', ' ', 0x80, 0xff, '<', '>', '@'};
                buf[below(n)] = v[below(sizeof(v))];
            }
            break;
        case 2: /* insert random bytes */
            len = 1 + below(8);
            if (n + len <= cap) {
                memmove(buf + at + len, buf + at, n - at);
                for (size_t i = 0; i < len; i++)
                    buf[at + i] = (uint8_t)rnd();
                n += len;
            }
            break;
        case 3: /* delete a slice */
            if (at < n) {
                len = 1 + below(n - at < 64 ? n - at : 64);
                memmove(buf + at, buf + at + len, n - at - len);
                n -= len;
            }
            break;
        case 4: /* duplicate a slice */
            if (at < n) {
                len = 1 + below(n - at < 256 ? n - at : 256);
                if (n + len <= cap) {
                    memmove(buf + at + len, buf + at, n - at);
                    n += len;
                }
            }
            break;
        case 5: /* splice: the tail of another seed */
        {
            const struct blob *o = &seeds[below(n_seeds)];
            size_t from = below(o->n + 1);
            len = o->n - from;
            if (at + len > cap)
                len = cap - at;
            memcpy(buf + at, o->p + from, len);
            n = at + len;
            break;
        }
        default: /* insert a token */
        {
            static const char *const builtin[] = {"\r\n", "\n", "\r", "\r\n.\r\n", "\0",
                                                  "\xc3\xa9", "\xff", "=", ":", "<>"};
            const uint8_t *tp;
            if (n_tokens && below(3)) {
                const struct blob *t = &tokens[below(n_tokens)];
                tp = t->p;
                len = t->n;
            } else {
                size_t k = below(sizeof(builtin) / sizeof(builtin[0]));
                tp = (const uint8_t *)builtin[k];
                len = k == 4 ? 1 : strlen(builtin[k]);
            }
            if (n + len <= cap) {
                memmove(buf + at + len, buf + at, n - at);
                memcpy(buf + at, tp, len);
                n += len;
            }
            break;
        }
        }
    }
    return n;
}

int main(int argc, char **argv)
{
    unsigned long mutations = 2000, seed = 1;
    double seconds = 20, start;
    unsigned long done = 0;
    uint8_t *buf;
    int i;

    if (LLVMFuzzerInitialize)
        LLVMFuzzerInitialize(&argc, &argv);
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
            mutations = strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "-t") == 0 && i + 1 < argc)
            seconds = strtod(argv[++i], NULL);
        else if (strcmp(argv[i], "-s") == 0 && i + 1 < argc)
            seed = strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "-d") == 0 && i + 1 < argc)
            load_dict(argv[++i]);
        else
            add_path(argv[i]);
    }
    if (n_seeds == 0) {
        fprintf(stderr, "usage: %s [-n N] [-t SECONDS] [-s SEED] [-d DICT] SEED_PATH...\n",
                argv[0]);
        return 2;
    }
    rng_state = 0x9e3779b97f4a7c15ull ^ seed;
    for (size_t k = 0; k < n_seeds; k++)
        run_one(seeds[k].p, seeds[k].n);
    buf = xmalloc_or_die(DRIVER_MAX_INPUT);
    start = now();
    for (; done < mutations; done++) {
        size_t n;
        if (now() - start > seconds)
            break;
        n = mutate(buf, DRIVER_MAX_INPUT);
        run_one(buf, n);
    }
    printf("fuzz_driver: %zu seeds, %lu mutations in %.1f s, no failure\n", n_seeds, done,
           now() - start);
    free(buf);
    for (size_t k = 0; k < n_seeds; k++)
        free(seeds[k].p);
    for (size_t k = 0; k < n_tokens; k++)
        free(tokens[k].p);
    return 0;
}
