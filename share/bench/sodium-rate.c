/*
 * sodium-rate: the reference for every figure in make bench.  Prints one
 * JSON line with the raw single-core libsodium Ed25519 sign and verify rates
 * on messages of the given size (default 300 bytes), measured for about the
 * given number of seconds each.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <sodium.h>

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	size_t len = argc > 1 ? strtoul(argv[1], NULL, 10) : 300;
	double secs = argc > 2 ? atof(argv[2]) : 1.0;
	unsigned char pk[32], sk[64], sig[64];
	unsigned char *m;
	unsigned long n;
	double t0, ts, tv;

	if (sodium_init() < 0 || !(m = malloc(len ? len : 1)))
		return 2;
	randombytes_buf(m, len);
	crypto_sign_keypair(pk, sk);
	t0 = now();
	for (n = 0; (n & 255) || now() - t0 < secs; n++) {
		m[0] = (unsigned char)n;
		crypto_sign_detached(sig, NULL, m, len, sk);
	}
	ts = n / (now() - t0);
	t0 = now();
	for (n = 0; (n & 255) || now() - t0 < secs; n++) {
		if (crypto_sign_verify_detached(sig, m, len, pk) != 0)
			return 1;
	}
	tv = n / (now() - t0);
	printf("{\"sign_per_s\":%.0f,\"verify_per_s\":%.0f,\"bytes\":%zu}\n",
	    ts, tv, len);
	free(m);
	return 0;
}
