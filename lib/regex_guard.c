/*
 * regex_guard: the cost estimate in front of regcomp (see regex_guard.h).
 */
#include "regex_guard.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

/* The estimate: an atom counts 1, a group what it holds, and
 * a repetition multiplies what it applies to by its upper bound plus one
 * (2 for * + ?).  The count saturates just past REGEX_COST_MAX. */
static size_t cost_add(size_t a, size_t b)
{
    return a > REGEX_COST_MAX || b > REGEX_COST_MAX - a ? REGEX_COST_MAX + 1 : a + b;
}

static size_t cost_mul(size_t a, size_t b)
{
    return b != 0 && a > (REGEX_COST_MAX + 1) / b ? REGEX_COST_MAX + 1 : a * b;
}

/* An interval "{m}", "{m,}", "{,n}" or "{m,n}" at re[*i]: true, *i past it
 * and *factor its upper bound (m when unbounded) plus one.  Otherwise false
 * (regcomp takes the brace literally or refuses it). */
static bool regex_interval(const char *re, size_t len, size_t *i, size_t *factor)
{
    size_t k = *i + 1, lo = 0, hi = 0, digits = 0;
    bool comma = false, have_hi = false;

    for (; k < len && re[k] >= '0' && re[k] <= '9'; k++, digits++)
        lo = cost_add(cost_mul(lo, 10), (size_t)(re[k] - '0'));
    if (k < len && re[k] == ',') {
        comma = true;
        for (k++; k < len && re[k] >= '0' && re[k] <= '9'; k++, digits++) {
            hi = cost_add(cost_mul(hi, 10), (size_t)(re[k] - '0'));
            have_hi = true;
        }
    }
    if (k >= len || re[k] != '}' || digits == 0)
        return false;
    *factor = cost_add(comma && have_hi && hi > lo ? hi : lo, 1);
    *i = k + 1;
    return true;
}

/* Index just past the bracket expression that starts at re[i]. */
static size_t regex_bracket_end(const char *re, size_t len, size_t i)
{
    size_t k = i + 1;

    if (k < len && re[k] == '^')
        k++;
    if (k < len && re[k] == ']')
        k++;
    while (k < len && re[k] != ']') {
        if (re[k] == '[' && k + 1 < len &&
            (re[k + 1] == ':' || re[k + 1] == '=' || re[k + 1] == '.')) {
            char d = re[k + 1];

            for (k += 2; k + 1 < len && !(re[k] == d && re[k + 1] == ']'); k++)
                ;
            k = k + 2 < len ? k + 2 : len;
        } else {
            k++;
        }
    }
    return k < len ? k + 1 : len;
}

struct regex_frame {
    size_t total;   /* cost of the group so far */
    size_t last;    /* cost of its last atom or group (0: none yet) */
};

size_t regex_cost(const char *re, size_t len)
{
    struct regex_frame *st = XNEWARRAY(struct regex_frame, len + 1);
    size_t depth = 0, i = 0, cost = 0, factor;

    st[0].total = st[0].last = 0;
    while (i < len) {
        struct regex_frame *f = &st[depth];
        size_t atom = 1;
        char c = re[i];

        if (c == '(') {
            depth++;
            st[depth].total = st[depth].last = 0;
            i++;
            continue;
        }
        if (c == '|') {
            f->last = 0;
            i++;
            continue;
        }
        factor = 0;
        if (c == '*' || c == '+' || c == '?') {
            factor = 2;
            i++;
        } else if (c == '{' && regex_interval(re, len, &i, &factor)) {
            /* i is past the interval */
        }
        if (factor) {
            if (f->last == 0) {         /* nothing to repeat: a literal */
                f->total = cost_add(f->total, 1);
                f->last = 1;
            }
            /* f->total >= f->last, and the product is not smaller */
            f->total = cost_add(f->total - f->last, cost_mul(f->last, factor));
            f->last = cost_mul(f->last, factor);
            continue;
        }
        if (c == ')' && depth > 0) {
            atom = f->total ? f->total : 1;
            depth--;
            f = &st[depth];
            i++;
        } else if (c == '\\' && i + 1 < len) {
            i += 2;
        } else if (c == '[') {
            i = regex_bracket_end(re, len, i);
        } else {
            i++;
        }
        f->total = cost_add(f->total, atom);
        f->last = atom;
    }
    for (size_t k = 0; k <= depth; k++)
        cost = cost_add(cost, st[k].total);
    free(st);
    return cost;
}

int regex_compile(regex_t *re, const char *text, int flags, struct err *e)
{
    int rc;

    if (regex_cost(text, strlen(text)) > REGEX_COST_MAX)
        return err_set(e, ERR_PARSE, "too complex (its repetitions expand too far)");
    rc = regcomp(re, text, flags);
    if (rc != 0) {
        char msg[200];

        regerror(rc, re, msg, sizeof(msg));
        return err_set(e, ERR_PARSE, "%s", msg);
    }
    return 0;
}
