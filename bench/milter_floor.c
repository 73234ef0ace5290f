/*
 * milter_floor: a libmilter milter that does nothing, for bench/bench_milter.py.
 *
 * The protocol's own floor: it negotiates the same conversation as mailwarden's milter
 * (src/mailwarden/milter/app.py, ScanMilter) - connect, MAIL, RCPT, each header,
 * end-of-headers and each body chunk sent without a reply; HELO and unknown commands
 * not sent; DATA and end of message answered; on a unix socket DATA and end-of-headers
 * not sent at all - and does no work: every callback returns at once, end of message
 * answers CONTINUE without changing the message. Whatever mailwarden costs above this
 * is mailwarden's own.
 *
 * Built by the bench at run time (gcc ... -lmilter -lpthread, Debian: libmilter-dev);
 * not part of mailwarden.
 *
 * Usage: milter_floor SOCKET      (libmilter syntax: inet:PORT@HOST or unix:/path)
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <libmilter/mfapi.h>

#define NOREPLY_STEPS \
    (SMFIP_NR_CONN | SMFIP_NR_MAIL | SMFIP_NR_RCPT | SMFIP_NR_HDR | SMFIP_NR_EOH | \
     SMFIP_NR_BODY)
#define SKIPPED_STEPS (SMFIP_NOHELO | SMFIP_NOUNKNOWN)

static int answer_data = 1; /* 0 on a unix socket, as mailwarden */

static sfsistat floor_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1,
                                unsigned long f2, unsigned long f3, unsigned long *pf0,
                                unsigned long *pf1, unsigned long *pf2, unsigned long *pf3)
{
    (void)ctx;
    (void)f0;
    (void)f2;
    (void)f3;
    *pf0 = 0; /* no actions: it changes nothing */
    *pf1 = f1 & (NOREPLY_STEPS | SKIPPED_STEPS);
    if (!answer_data)
        *pf1 = (*pf1 | (f1 & (SMFIP_NODATA | SMFIP_NOEOH))) & ~SMFIP_NR_EOH;
    *pf2 = 0;
    *pf3 = 0;
    return SMFIS_CONTINUE;
}

static sfsistat floor_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *addr)
{
    (void)ctx;
    (void)host;
    (void)addr;
    return SMFIS_NOREPLY;
}

static sfsistat floor_envfrom(SMFICTX *ctx, char **argv)
{
    (void)ctx;
    (void)argv;
    return SMFIS_NOREPLY;
}

static sfsistat floor_envrcpt(SMFICTX *ctx, char **argv)
{
    (void)ctx;
    (void)argv;
    return SMFIS_NOREPLY;
}

static sfsistat floor_data(SMFICTX *ctx)
{
    (void)ctx;
    return SMFIS_CONTINUE;
}

static sfsistat floor_header(SMFICTX *ctx, char *name, char *value)
{
    (void)ctx;
    (void)name;
    (void)value;
    return SMFIS_NOREPLY;
}

static sfsistat floor_eoh(SMFICTX *ctx)
{
    (void)ctx;
    return SMFIS_NOREPLY;
}

static sfsistat floor_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
    (void)ctx;
    (void)chunk;
    (void)len;
    return SMFIS_NOREPLY;
}

static sfsistat floor_eom(SMFICTX *ctx)
{
    (void)ctx;
    return SMFIS_CONTINUE;
}

static sfsistat floor_abort(SMFICTX *ctx)
{
    (void)ctx;
    return SMFIS_CONTINUE;
}

static sfsistat floor_close(SMFICTX *ctx)
{
    (void)ctx;
    return SMFIS_CONTINUE;
}

int main(int argc, char **argv)
{
    struct smfiDesc desc;

    if (argc != 2) {
        fprintf(stderr, "usage: milter_floor inet:PORT@HOST|unix:/path\n");
        return 64;
    }
    answer_data = strncmp(argv[1], "unix:", 5) != 0;
    memset(&desc, 0, sizeof desc);
    desc.xxfi_name = "floor";
    desc.xxfi_version = SMFI_VERSION;
    desc.xxfi_flags = 0;
    desc.xxfi_connect = floor_connect;
    desc.xxfi_envfrom = floor_envfrom;
    desc.xxfi_envrcpt = floor_envrcpt;
    desc.xxfi_header = floor_header;
    desc.xxfi_eoh = floor_eoh;
    desc.xxfi_body = floor_body;
    desc.xxfi_eom = floor_eom;
    desc.xxfi_abort = floor_abort;
    desc.xxfi_close = floor_close;
    desc.xxfi_data = floor_data;
    desc.xxfi_negotiate = floor_negotiate;
    umask(0); /* the unix socket must be usable by user postfix */
    if (smfi_setconn(argv[1]) == MI_FAILURE || smfi_register(desc) == MI_FAILURE) {
        fprintf(stderr, "milter_floor: cannot use %s\n", argv[1]);
        return 1;
    }
    if (smfi_opensocket(1) == MI_FAILURE) {
        fprintf(stderr, "milter_floor: cannot open %s\n", argv[1]);
        return 1;
    }
    return smfi_main() == MI_SUCCESS ? 0 : 1;
}
