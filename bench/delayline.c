/*
 * delayline.c: a link with a round trip between two network namespaces,
 * for bench/nodewin.py (kernels without sch_netem): a TUN device in each,
 * and every packet read from one written to the other half a round trip
 * later, paced to a rate if one is given. Packets beyond a queue of 256 MiB
 * per direction are dropped, as a full router queue would.
 *
 *	delayline NS_A TUN_A NS_B TUN_B RTT_US [MBIT]
 *
 * Prints "ready" once both devices exist (the caller addresses them with
 * ip(8)); runs until killed. Not part of the daemon.
 */
#define _GNU_SOURCE
#include <sys/ioctl.h>
#include <sys/types.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A GSO packet (up to 64 KiB) and its virtio_net_hdr; beyond it a read
 * would be cut short. */
#define PKT_MAX		(128u << 10)
#define QUEUE_MAX	(256u << 20)

struct pkt {
	struct pkt	*next;
	uint64_t	 due;		/* ns, CLOCK_MONOTONIC */
	size_t		 len;
	unsigned char	 b[];
};

struct dir {
	int		 in, out;
	struct pkt	*head, *tail;
	size_t		 queued;
	uint64_t	 free_at;	/* the paced link is busy until then */
	unsigned long	 drops;
};

static uint64_t	 half_ns, ns_per_byte_x1000;

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int
tun_in(const char *ns, const char *name)
{
	struct ifreq ifr;
	char path[256];
	int nsfd, fd;

	snprintf(path, sizeof(path), "/var/run/netns/%s", ns);
	if ((nsfd = open(path, O_RDONLY)) < 0 || setns(nsfd, CLONE_NEWNET) != 0) {
		perror(path);
		exit(1);
	}
	close(nsfd);
	if ((fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK)) < 0) {
		perror("/dev/net/tun");
		exit(1);
	}
	memset(&ifr, 0, sizeof(ifr));
	/* With a virtio_net_hdr and offloads the stack hands over TSO
	 * packets of up to 64 KiB with their checksums left to "hardware",
	 * and takes them so on the other side: a syscall per 64 KiB, not per
	 * 1500 bytes, and no checksums computed. Each packet is passed on
	 * with its header as it came. */
	ifr.ifr_flags = IFF_TUN | IFF_NO_PI | IFF_VNET_HDR;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) != 0) {
		perror("TUNSETIFF");
		exit(1);
	}
	if (ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) != 0) {
		perror("TUNSETOFFLOAD");
		exit(1);
	}
	return fd;
}

/* Read what is there; each packet due half a round trip from now, or once
 * the paced link has sent the ones before it. */
static void
take(struct dir *d)
{
	struct pkt *p;
	ssize_t n;
	uint64_t t;

	for (;;) {
		if ((p = malloc(sizeof(*p) + PKT_MAX)) == NULL)
			return;
		if ((n = read(d->in, p->b, PKT_MAX)) <= 0) {
			free(p);
			return;
		}
		if (d->queued + (size_t)n > QUEUE_MAX) {
			free(p);
			d->drops++;
			continue;
		}
		/* Give back the rest (in place: malloc's arena, below) */
		{
			struct pkt *q = realloc(p, sizeof(*p) + (size_t)n);

			if (q != NULL)
				p = q;
		}
		t = now_ns();
		if (ns_per_byte_x1000 != 0) {
			if (d->free_at < t)
				d->free_at = t;
			d->free_at += (uint64_t)n * ns_per_byte_x1000 / 1000;
			t = d->free_at;
		}
		p->due = t + half_ns;
		p->len = (size_t)n;
		p->next = NULL;
		if (d->tail != NULL)
			d->tail->next = p;
		else
			d->head = p;
		d->tail = p;
		d->queued += (size_t)n;
	}
}

/* Write what is due; the time until the next one is due, or -1. */
static int64_t
give(struct dir *d, uint64_t t)
{
	struct pkt *p;

	while ((p = d->head) != NULL && p->due <= t) {
		if (write(d->out, p->b, p->len) < 0 && errno == EAGAIN)
			return 20000;	/* the stack's backlog is full: soon */
		d->head = p->next;
		if (d->head == NULL)
			d->tail = NULL;
		d->queued -= p->len;
		free(p);
	}
	return p == NULL ? -1 : (int64_t)(p->due - t);
}

/* One direction, on a thread of its own: the data one and the ACKs do not
 * wait for each other (the write runs the receiving stack). */
static void *
run(void *arg)
{
	struct dir *d = arg;
	struct pollfd pfd;

	for (;;) {
		struct timespec ts, *tp = NULL;
		int64_t wait = give(d, now_ns());

		if (wait >= 0) {
			ts.tv_sec = wait / 1000000000;
			ts.tv_nsec = wait % 1000000000;
			tp = &ts;
		}
		pfd.fd = d->in;
		pfd.events = POLLIN;
		if (ppoll(&pfd, 1, tp, NULL) < 0 && errno != EINTR) {
			perror("ppoll");
			exit(1);
		}
		if (pfd.revents & POLLIN)
			take(d);
	}
	return NULL;
}

int
main(int argc, char *argv[])
{
	static struct dir d[2];
	pthread_t th;
	int a, b;

	if (argc != 6 && argc != 7) {
		fprintf(stderr, "usage: delayline NS_A TUN_A NS_B TUN_B RTT_US "
		    "[MBIT]\n");
		return 2;
	}
	half_ns = strtoull(argv[5], NULL, 10) * 1000 / 2;
	if (argc == 7 && strtoull(argv[6], NULL, 10) > 0)
		/* ns per byte, times 1000: 8e3 / Mbit/s */
		ns_per_byte_x1000 = 8000000ull / strtoull(argv[6], NULL, 10);
	/* Packet buffers from the heap, not an mmap(2) each. */
	mallopt(M_MMAP_THRESHOLD, 4 << 20);
	signal(SIGPIPE, SIG_IGN);
	a = tun_in(argv[1], argv[2]);
	b = tun_in(argv[3], argv[4]);
	d[0].in = a;
	d[0].out = b;
	d[1].in = b;
	d[1].out = a;
	if (pthread_create(&th, NULL, run, &d[1]) != 0) {
		perror("pthread_create");
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	run(&d[0]);
	return 0;
}
