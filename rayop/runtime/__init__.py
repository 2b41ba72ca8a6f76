"""A small controller runtime for asyncio, in the shape of controller-runtime; it knows nothing about Ray.

client       async REST client speaking plain dicts, client-side QPS/burst, rest_client_* metrics
cache        Informer: paged list + watch with bookmarks, 410 re-list, stall detection, indexes, handlers
queue        WorkQueue: dedupe, one worker per key, add_after, rate-limited retries
controller   Controller: predicates, owner mapping, N workers, Result(requeue_after), reconcile metrics
expectations create/delete expectations so a lagging cache never causes a double create
events       events.k8s.io recorder: non-blocking, folded repeats, rate-limited
leader       Lease-based leader election (client-go rules)
servers      /metrics, /healthz, /readyz
status       status writes only when changed, with the resourceVersion
logs         console or JSON logging
manager      Manager: servers, warm informers, leader election, controllers, graceful shutdown
"""
