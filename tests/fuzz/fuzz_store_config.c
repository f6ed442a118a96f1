/* libFuzzer target: STORE/config as read from a store. */
#include "manifest.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	char err[256] = "";
	struct store_config c;
	int r = store_config_parse((const char *)data, size, &c, err, sizeof(err));
	if (r < 0 && !err[0])
		abort();
	if (r == 0 && (strlen(c.id) != 32 || c.format != CB_FORMAT))
		abort();
	return 0;
}
