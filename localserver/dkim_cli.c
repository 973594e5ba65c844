/*
 * dkim_cli: `correod dkim-keygen`, which makes the DKIM signing key and
 * prints the DNS record to publish and the correod.conf lines that use it.
 */
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "commands.h"
#include "conf.h"
#include "dkim.h"
#include "rcfile.h"

#define DEFAULT_SELECTOR "correod"

static void usage(FILE *out)
{
    fputs("usage: correod dkim-keygen [-c CONFIG] [--selector S] [--domain D] [--key FILE]\n"
          "\n"
          "Make a 2048-bit RSA key for DKIM signing, print the DNS TXT record to\n"
          "publish and the correod.conf lines that turn signing on.  Defaults come\n"
          "from the config's dkim_* options, else selector \"" DEFAULT_SELECTOR "\", the\n"
          "first of `domains` and DIR/dkim.key next to the config.  With --domain\n"
          "and --key and no -c, no config is read.  An existing key is never\n"
          "replaced.\n", out);
}

/* "--name VALUE" or "--name=VALUE" at argv[*i]; 1 if it matched (value in
 * *val), 0 if not, -1 if the value is missing. */
static int opt_value(int argc, char **argv, int *i, const char *name, const char **val)
{
    const char *a = argv[*i];
    size_t n = strlen(name);

    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *val = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc)
        return -1;
    *val = argv[++*i];
    return 1;
}

static int load(const char *path, struct conf **c)
{
    struct rc_diag d;
    struct err e;

    rc_diag_init(&d);
    err_clear(&e);
    if (conf_load_flags(path, CONF_LOAD_NO_TLS_FILES, c, &d, &e) != 0) {
        if (d.n == 0)
            fprintf(stderr, "correod: %s\n", e.text);
        for (size_t i = 0; i < d.n; i++)
            fprintf(stderr, "%s\n", d.msgs[i]);
        if (d.dropped)
            fprintf(stderr, "(%zu more problems not shown)\n", d.dropped);
        rc_diag_free(&d);
        return -1;
    }
    rc_diag_free(&d);
    return 0;
}

/* path made absolute against the current directory (for the config line). */
static char *absolute(const char *path)
{
    char *cwd;
    char *r;

    if (path[0] == '/')
        return xstrdup(path);
    cwd = getcwd(NULL, 0);
    if (cwd == NULL)
        return xstrdup(path);
    r = xasprintf("%s/%s", strcmp(cwd, "/") == 0 ? "" : cwd,
                  strncmp(path, "./", 2) == 0 ? path + 2 : path);
    free(cwd);
    return r;
}

/* A key made by root for a server that runs as run_user must be readable
 * by that user. */
static void give_to_run_user(const struct conf *c, const char *key)
{
    struct passwd *pw;

    if (c == NULL || c->run_user == NULL || geteuid() != 0)
        return;
    pw = getpwnam(c->run_user);
    if (pw == NULL) {
        fprintf(stderr, "correod: warning: run_user %s not found; %s stays root's\n",
                c->run_user, key);
        return;
    }
    if (chown(key, pw->pw_uid, pw->pw_gid) != 0)
        fprintf(stderr, "correod: warning: cannot give %s to %s: %s\n", key, c->run_user,
                strerror(errno));
}

static int same(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

int cmd_dkim_keygen(int argc, char **argv)
{
    const char *conf_path = NULL, *selector = NULL, *domain = NULL, *key_opt = NULL;
    struct conf *c = NULL;
    struct buf record = BUF_INIT;
    struct stat st;
    struct err e;
    char *key = NULL;
    int rc = 1;

    for (int i = 1; i < argc; i++) {
        const char *v = NULL, **dst = NULL;
        int m = 1;

        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "-c") == 0) {
            dst = &conf_path;
            if (i + 1 < argc)
                v = argv[++i];
            else
                m = -1;
        } else if ((m = opt_value(argc, argv, &i, "--config", &v)) != 0) {
            dst = &conf_path;
        } else if ((m = opt_value(argc, argv, &i, "--selector", &v)) != 0) {
            dst = &selector;
        } else if ((m = opt_value(argc, argv, &i, "--domain", &v)) != 0) {
            dst = &domain;
        } else if ((m = opt_value(argc, argv, &i, "--key", &v)) != 0) {
            dst = &key_opt;
        } else {
            fprintf(stderr, "correod dkim-keygen: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
        if (m < 0 || v == NULL || v[0] == '\0') {
            fprintf(stderr, "correod dkim-keygen: %s needs a value\n", argv[i]);
            usage(stderr);
            return 2;
        }
        *dst = v;
    }

    if (conf_path != NULL || domain == NULL || key_opt == NULL) {
        if (load(conf_path ? conf_path : conf_default_path(), &c) != 0)
            return 1;
    }
    if (selector == NULL)
        selector = c && c->dkim_selector ? c->dkim_selector : DEFAULT_SELECTOR;
    if (domain == NULL) {
        domain = c->dkim_domain ? c->dkim_domain : c->n_domains > 0 ? c->domains[0] : NULL;
        if (domain == NULL) {
            fprintf(stderr, "correod: %s names no domain; use --domain\n", c->path);
            goto out;
        }
    }
    if (key_opt != NULL)
        key = absolute(key_opt);
    else if (c->dkim_key != NULL)
        key = xstrdup(c->dkim_key);
    else
        key = xasprintf("%s/dkim.key", strcmp(c->dir, "/") == 0 ? "" : c->dir);

    if (lstat(key, &st) == 0) {
        fprintf(stderr, "correod: %s already exists; not replacing a key in use "
                "(remove it first, or give another --key)\n", key);
        goto out;
    }
    err_clear(&e);
    if (dkim_keygen(key, domain, selector, &record, &e) != 0) {
        fprintf(stderr, "correod: %s\n", e.text);
        goto out;
    }
    give_to_run_user(c, key);

    printf("Wrote the DKIM key %s.\n\n"
           "Publish this TXT record in the DNS zone of %s:\n\n%s\n\n",
           key, domain, buf_cstr(&record));
    if (c && same(c->dkim_domain, domain) && same(c->dkim_selector, selector) &&
        same(c->dkim_key, key)) {
        printf("%s already uses this key: outbound mail is signed once the record "
               "is published.\n", c->path);
    } else {
        printf("Then put these lines in %s%s and reload correod:\n\n"
               "dkim_domain   %s\n"
               "dkim_selector %s\n"
               "dkim_key      %s\n",
               c ? c->path : "correod.conf",
               c && (c->dkim_domain || c->dkim_selector || c->dkim_key)
                   ? " (in place of its dkim_* lines)" : "",
               domain, selector, key);
    }
    if (fflush(stdout) != 0) {
        fprintf(stderr, "correod: cannot write the output: %s\n", strerror(errno));
        goto out;
    }
    rc = 0;
out:
    free(key);
    buf_free(&record);
    conf_free(c);
    return rc;
}
