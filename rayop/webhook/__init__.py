"""Validating admission webhook for ray.io RayCluster, RayJob and RayService: every rule of
`rayop.validation` at create and update, where KubeRay checks little (docs/compatibility.md#validation).

admission     AdmissionReview in, AdmissionReview out (allowed, errors, warnings), as plain dicts
server        ``WebhookServer``: the HTTPS server, certificate refresh included
certs         serving certificates: generated and rotated, kept in a Secret, or read from a directory
registration  the ValidatingWebhookConfiguration that points the API server at the webhook
standalone    ``rayop webhook``: the webhook as its own process (the operator embeds ``WebhookServer``)
"""

from rayop.webhook.admission import PATHS, review
from rayop.webhook.certs import (
    CertBundle,
    CertSource,
    FileCertSource,
    SecretCertSource,
    SelfSignedCertSource,
)
from rayop.webhook.registration import (
    DEFAULT_NAME,
    build_webhook_configuration,
    delete_webhook_configuration,
    ensure_webhook_configuration,
)
from rayop.webhook.server import DEFAULT_PORT, WebhookServer, make_app
from rayop.webhook.standalone import WebhookOptions, start_webhook

__all__ = [
    "DEFAULT_NAME",
    "DEFAULT_PORT",
    "PATHS",
    "CertBundle",
    "CertSource",
    "FileCertSource",
    "SecretCertSource",
    "SelfSignedCertSource",
    "WebhookOptions",
    "WebhookServer",
    "build_webhook_configuration",
    "delete_webhook_configuration",
    "ensure_webhook_configuration",
    "make_app",
    "review",
    "start_webhook",
]
