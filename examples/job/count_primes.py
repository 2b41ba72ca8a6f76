"""A Ray job run from a local directory: `rayop job submit --working-dir examples/job -- python count_primes.py`.

The directory is uploaded to the cluster and becomes the driver's working directory, so the script can
import its neighbours and read files next to it.
"""

import os

import ray

ray.init()


@ray.remote
def count_primes(lo: int, hi: int) -> int:
    found = 0
    for n in range(max(lo, 2), hi):
        if all(n % d for d in range(2, int(n**0.5) + 1)):
            found += 1
    return found


limit = int(os.environ.get("PRIME_LIMIT", "200000"))
step = limit // 8
total = sum(ray.get([count_primes.remote(i, i + step) for i in range(0, limit, step)]))
print(f"{total} primes below {limit}")
