/* libFuzzer target: a lock object (locks/ID.json) as read from a store. */
#include "lock.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	struct lock_info li;
	if (lock_info_parse((const char *)data, size, &li) == 0 &&
	    (strlen(li.host) >= sizeof(li.host) || li.pid < 0))
		abort();
	return 0;
}
