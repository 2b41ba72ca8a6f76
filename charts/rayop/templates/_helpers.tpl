{{/* Names. The release's full name is the chart name, or <release>-<chart> when the release name does
not already contain it; every object of the release is named after it. */}}
{{- define "rayop.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "rayop.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "rayop.component" -}}
{{- default "operator" .Values.componentOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "rayop.labels" -}}
app.kubernetes.io/name: {{ include "rayop.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{- define "rayop.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rayop.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "rayop.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "rayop.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "rayop.webhookService" -}}{{ include "rayop.fullname" . }}-webhook{{- end -}}
{{- define "rayop.webhookSecret" -}}{{ include "rayop.fullname" . }}-webhook-cert{{- end -}}
{{- define "rayop.webhookConfiguration" -}}{{ include "rayop.fullname" . }}-validating-webhook{{- end -}}
{{- define "rayop.certificate" -}}{{ include "rayop.fullname" . }}-webhook{{- end -}}

{{/* Whether the admission webhook is installed (a single-namespace install creates nothing
cluster-scoped, and the ValidatingWebhookConfiguration is). */}}
{{- define "rayop.webhookEnabled" -}}
{{- if and .Values.webhook.enabled (not .Values.singleNamespaceInstall) -}}true{{- end -}}
{{- end -}}

{{/* The namespaces the operator watches, comma-separated; empty means all. */}}
{{- define "rayop.watchNamespaces" -}}
{{- if .Values.watchNamespace -}}
{{- join "," .Values.watchNamespace -}}
{{- else if .Values.singleNamespaceInstall -}}
{{- .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{- define "rayop.featureGates" -}}
{{- $gates := list -}}
{{- range .Values.featureGates -}}
{{- $gates = append $gates (printf "%s=%t" .name .enabled) -}}
{{- end -}}
{{- join "," $gates -}}
{{- end -}}

{{/* Values checked before anything renders (the operator would refuse them at start-up anyway). */}}
{{- define "rayop.validate" -}}
{{- $rc := toString .Values.reconcileConcurrency -}}
{{- if not (regexMatch "^[1-9][0-9]*$" $rc) -}}
{{- fail (printf "reconcileConcurrency must be a positive integer, got %q" $rc) -}}
{{- end -}}
{{- $qps := toString .Values.kubeClient.qps -}}
{{- if not (regexMatch "^[0-9]+(\\.[0-9]+)?$" $qps) -}}
{{- fail (printf "kubeClient.qps must be a non-negative number, got %q" $qps) -}}
{{- end -}}
{{- $burst := toString .Values.kubeClient.burst -}}
{{- if not (regexMatch "^[0-9]+$" $burst) -}}
{{- fail (printf "kubeClient.burst must be a non-negative integer, got %q" $burst) -}}
{{- end -}}
{{- range list .Values.logging.stdoutEncoder .Values.logging.fileEncoder -}}
{{- if not (has . (list "json" "console")) -}}
{{- fail (printf "logging encoders must be json or console, got %q" .) -}}
{{- end -}}
{{- end -}}
{{- if not (has .Values.webhook.failurePolicy (list "Fail" "Ignore")) -}}
{{- fail (printf "webhook.failurePolicy must be Fail or Ignore, got %q" .Values.webhook.failurePolicy) -}}
{{- end -}}
{{- end -}}

{{/* The kinds the webhook admits, as rayop.webhook.registration registers them (a unit test compares
the rendered configuration with it). */}}
{{- define "rayop.admittedKinds" -}}
- {name: validate.rayclusters.ray.io, group: ray.io, resource: rayclusters, path: /validate-ray-io-v1-raycluster, versions: [v1, v1alpha1], operations: [CREATE, UPDATE]}
- {name: validate.rayjobs.ray.io, group: ray.io, resource: rayjobs, path: /validate-ray-io-v1-rayjob, versions: [v1, v1alpha1], operations: [CREATE, UPDATE]}
- {name: validate.rayservices.ray.io, group: ray.io, resource: rayservices, path: /validate-ray-io-v1-rayservice, versions: [v1, v1alpha1], operations: [CREATE, UPDATE]}
- {name: validate.scale.rayworkergroups.rayop.io, group: rayop.io, resource: rayworkergroups/scale, path: /validate-rayop-io-v1alpha1-rayworkergroup-scale, versions: [v1alpha1], operations: [UPDATE]}
- {name: validate.scale.rayservedeployments.rayop.io, group: rayop.io, resource: rayservedeployments/scale, path: /validate-rayop-io-v1alpha1-rayservedeployment-scale, versions: [v1alpha1], operations: [UPDATE]}
{{- end -}}
