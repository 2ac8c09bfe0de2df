/*
 * Injected storage faults for the end-to-end tests, loaded with LD_PRELOAD into a daemon.
 *
 * While the file named by PARLEY_FAULT_SYNC exists, every fsync, fdatasync, sync_file_range
 * and msync fails with EIO, as a dying disk's would; remove the file and they work again.
 * Nothing else changes: writes still reach the page cache, so only what waits for durability
 * sees the fault.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static int faulty(void) {
    const char *flag = getenv("PARLEY_FAULT_SYNC");
    return flag != NULL && access(flag, F_OK) == 0;
}

#define PASS_THROUGH(ret, name, params, args)                      \
    ret name params {                                              \
        if (faulty()) {                                            \
            errno = EIO;                                           \
            return -1;                                             \
        }                                                          \
        static ret (*real) params;                                 \
        if (real == NULL) real = (ret (*) params)dlsym(RTLD_NEXT, #name); \
        return real args;                                          \
    }

PASS_THROUGH(int, fsync, (int fd), (fd))
PASS_THROUGH(int, fdatasync, (int fd), (fd))
PASS_THROUGH(int, sync_file_range, (int fd, off64_t offset, off64_t nbytes, unsigned int flags),
             (fd, offset, nbytes, flags))
PASS_THROUGH(int, msync, (void *addr, size_t length, int flags), (addr, length, flags))
