"""The dev loop: watch a build context, rebuild with the cache, swap the container with no downtime."""
