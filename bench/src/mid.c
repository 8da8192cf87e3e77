/* mid: random 8-32 KiB churn on a ring of 1024 live blocks (see ring.h). */
#include "ring.h"

int main(int argc, char **argv)
{
    return bench_ring_main(argc, argv, "mid", "random 8-32 KiB churn on a ring of live blocks",
                           (struct ring_defaults){2000000, 1024, 8192, 32768});
}
