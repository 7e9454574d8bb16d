/*
 * mkman.c: build tool that copies a man page template to stdout, replacing
 * the line `.\" @DIRECTIVES@` with the directive list from config_table[].
 */
#include <stdio.h>
#include <string.h>

#include "config.h"

int
main(int argc, char *argv[])
{
	char line[4096];
	FILE *in;

	if (argc != 2 || (in = fopen(argv[1], "r")) == NULL) {
		fprintf(stderr, "usage: mkman template\n");
		return 1;
	}
	while (fgets(line, sizeof(line), in) != NULL) {
		if (strcmp(line, ".\\\" @DIRECTIVES@\n") == 0)
			config_man(stdout);
		else
			fputs(line, stdout);
	}
	fclose(in);
	return ferror(stdout) ? 1 : 0;
}
