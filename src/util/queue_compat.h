/*
 * queue_compat.h: <sys/queue.h> plus BSD's safe iteration, which glibc's
 * copy lacks.
 */
#ifndef ALPCRUND_QUEUE_COMPAT_H
#define ALPCRUND_QUEUE_COMPAT_H

#include <sys/queue.h>

#ifndef TAILQ_FOREACH_SAFE
#define TAILQ_FOREACH_SAFE(var, head, field, tvar)			\
	for ((var) = TAILQ_FIRST((head));				\
	    (var) && ((tvar) = TAILQ_NEXT((var), field), 1);		\
	    (var) = (tvar))
#endif

#endif
