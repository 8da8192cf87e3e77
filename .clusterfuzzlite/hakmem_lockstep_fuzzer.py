#!/usr/bin/env python3
"""OSS-Fuzz / ClusterFuzzLite target: hakmem op programs in lockstep mode."""

from hakmem_oss_fuzz import main

if __name__ == "__main__":
    main("lockstep")
