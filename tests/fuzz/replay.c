/* Runs a fuzz target over files without libFuzzer (any compiler): every file named on the
 * command line, or every file in a directory named there. The corpus in tests/fuzz/corpus/
 * replays in every test run; clang builds the real fuzzers (meson -Dfuzz=true). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static int replay_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		return 1;
	}
	unsigned char *buf = NULL;
	size_t len = 0, cap = 0, n;
	do {
		if (len == cap && !(buf = realloc(buf, cap = cap ? 2 * cap : 65536))) {
			fclose(f);
			return 1;
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
	} while (n > 0);
	fclose(f);
	LLVMFuzzerTestOneInput(buf, len);
	free(buf);
	return 0;
}

int main(int argc, char **argv)
{
	int bad = 0, count = 0;
	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
			DIR *d = opendir(argv[i]);
			struct dirent *e;
			while (d && (e = readdir(d))) {
				if (e->d_name[0] == '.')
					continue;
				char p[4096];
				snprintf(p, sizeof(p), "%s/%s", argv[i], e->d_name);
				bad |= replay_file(p);
				count++;
			}
			if (d)
				closedir(d);
		} else {
			bad |= replay_file(argv[i]);
			count++;
		}
	}
	printf("replayed %d inputs\n", count);
	return bad || count == 0;
}
