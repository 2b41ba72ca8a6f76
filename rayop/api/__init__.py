"""What is Ray- and KubeRay-specific but does no I/O: names, the kind registry, schemas and spec readers.

constants    labels, annotations, env vars, event reasons, finalizers, as KubeRay spells them
features     KubeRay's feature gates and their defaults
kinds        the registry of kinds (group, versions, plural, schema, printer columns, subresources)
schema       the Ray-level OpenAPI schemas of the ray.io CRDs
crdgen       the CRD generator: Ray schemas composed with the API server's core types
spec         what a RayCluster spec switches on (autoscaling, GCS fault tolerance, auth)
"""
