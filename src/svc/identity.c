/*
 * identity.c: the text form of incarnations and generations in response
 * headers (identity.h).
 */
#include <stdio.h>
#include <string.h>

#include "hex.h"
#include "identity.h"

void
identity_format(uint64_t v, char buf[IDENTITY_HEX])
{
	snprintf(buf, IDENTITY_HEX, "%016llx", (unsigned long long)v);
}

int
identity_parse(const char *s, uint64_t *v)
{
	uint64_t x = 0;
	int i, d;

	if (s == NULL || strlen(s) != IDENTITY_HEX - 1)
		return -1;
	for (i = 0; i < IDENTITY_HEX - 1; i++) {
		if ((d = hex_digit((unsigned char)s[i])) < 0)
			return -1;
		x = x << 4 | (uint64_t)d;
	}
	if (x == 0)
		return -1;
	*v = x;
	return 0;
}
