/* msg: the client's per-message summary; allocation and release. */
#include "msg.h"

#include <stdlib.h>

#include "xalloc.h"

struct msg *msg_new(void)
{
    return XNEW(struct msg);
}

static void msg_addrlist_free(struct msg_addrlist *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].name);
        free(l->v[i].addr);
    }
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

void msg_free(struct msg *m)
{
    if (m == NULL)
        return;
    free(m->key);
    msg_addrlist_free(&m->from);
    msg_addrlist_free(&m->to);
    msg_addrlist_free(&m->cc);
    msg_addrlist_free(&m->reply_to);
    msg_addrlist_free(&m->sender);
    free(m->subject);
    free(m->message_id);
    free(m->in_reply_to);
    for (size_t i = 0; i < m->n_references; i++)
        free(m->references[i]);
    free(m->references);
    free(m->list_id);
    free(m->x_label);
    free(m);
}
