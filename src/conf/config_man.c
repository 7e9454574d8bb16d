/*
 * config_man.c: the DIRECTIVES section of alpcrund.conf(5), written in mdoc
 * from config_table[], so that the manual cannot drift from the parser.
 * The build runs it through mkman (src/mkman.c).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "config.h"

/* Prose in mdoc: lines of at most 72 bytes broken at spaces, backslashes
 * escaped, no line starting with a dot. */
static void
text(FILE *f, const char *s)
{
	size_t col = 0, w;

	while (*s != '\0') {
		while (*s == ' ')
			s++;
		w = strcspn(s, " ");
		if (w == 0)
			break;
		if (col > 0 && col + 1 + w > 72) {
			fputc('\n', f);
			col = 0;
		} else if (col > 0) {
			fputc(' ', f);
			col++;
		}
		if (col == 0 && (*s == '.' || *s == '\''))
			fputs("\\&", f);
		for (size_t i = 0; i < w; i++) {
			if (s[i] == '\\')
				fputs("\\e", f);
			else
				fputc(s[i], f);
		}
		col += w;
		s += w;
	}
}

static const char *
arg_name(const struct config_directive *d)
{
	switch (d->type) {
	case CONF_STRING:	return "word";
	case CONF_PATH:		return "path";
	case CONF_NUMBER:	return "number";
	case CONF_DURATION:	return "duration";
	case CONF_SIZE:		return "size";
	case CONF_PERCENT:	return "percent";
	case CONF_ADDRESS:	return "address";
	default:		return NULL;
	}
}

static void
head(FILE *f, const struct config_directive *d)
{
	const char *const *c;

	fprintf(f, ".It Ic %s", d->name);
	if (d->type == CONF_FLAG)
		fputs(" Cm on | off", f);
	else if (d->type == CONF_CHOICE) {
		for (c = d->choices; *c != NULL; c++)
			fprintf(f, "%s Cm %s", c == d->choices ? "" : " |", *c);
	} else if (d->flags & CONF_LIST)
		fprintf(f, " Ar %s Op Ar %s ...", arg_name(d), arg_name(d));
	else
		fprintf(f, " Ar %s", arg_name(d));
	fputc('\n', f);
}

static int
has_bounds(const struct config_directive *d)
{
	return (d->type == CONF_NUMBER || d->type == CONF_DURATION ||
	    d->type == CONF_SIZE || d->type == CONF_PERCENT) && d->max > 0;
}

void
config_man(FILE *f)
{
	char b1[32], b2[32];
	size_t i;

	fputs(".Bl -tag -width Ds\n", f);
	for (i = 0; i < config_table_len; i++) {
		const struct config_directive *d = &config_table[i];

		head(f, d);
		text(f, d->help);
		fputs(".\n", f);
		if (has_bounds(d)) {
			fprintf(f, "From\n.Cm %s\nto\n.Cm %s %s\n",
			    config_format_value(d, d->min, b1, sizeof(b1)),
			    config_format_value(d, d->max, b2, sizeof(b2)),
			    (d->flags & CONF_ZERO) ? "," : ".");
			if (d->flags & CONF_ZERO)
				fputs("or\n.Cm 0\nfor none.\n", f);
		}
		if (d->def == NULL)
			fputs("Unset by default.\n", f);
		else if (d->def_node != NULL)
			fprintf(f, "The default is\n.Cm %s\nin central mode and\n"
			    ".Cm %s\nin node mode.\n", d->def, d->def_node);
		else
			fprintf(f, "The default is\n.Cm %s .\n", d->def);
		if (d->flags & CONF_MULTI)
			fputs("May be given more than once.\n", f);
		if (d->flags & CONF_LIST)
			fprintf(f, "One directive takes 1 to %d addresses, "
			    "separated by blanks.\n", CONFIG_MAX_UPSTREAM);
		fputs((d->flags & CONF_LIVE) ?
		    "A new value applies on\n.Dv SIGHUP .\n" :
		    "A new value needs a restart.\n", f);
		if (d->flags & CONF_LATER)
			fputs("Not supported in this build: naming it is an "
			    "error.\n", f);
		else if (d->later_choices != NULL && d->later_choices[0] != NULL) {
			const char *const *c;

			for (c = d->later_choices; *c != NULL; c++)
				fprintf(f, ".Cm %s\nis not supported in this "
				    "build.\n", *c);
		}
	}
	fputs(".El\n", f);
}
