/* mixed: random 16-1024 B churn on a ring of 4096 live blocks (see ring.h). */
#include "ring.h"

int main(int argc, char **argv)
{
    return bench_ring_main(argc, argv, "mixed", "random 16-1024 B churn on a ring of live blocks",
                           (struct ring_defaults){20000000, 4096, 16, 1024});
}
