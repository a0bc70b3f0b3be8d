{{/*
Names. With the release named "keyward" (and no overrides) the full name is "keyward", so
the objects get the names the manager expects by default: Service keyward-webhook,
MutatingWebhookConfiguration keyward-injector, Secret keyward-webhook-cert. The manager
is always told the actual names by flags.
*/}}
{{- define "keyward.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "keyward.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* suffixed "suffix": the full name with a suffix, within 63 characters. */}}
{{- define "keyward.suffixed" -}}
{{- $full := include "keyward.fullname" .ctx }}
{{- printf "%s-%s" ($full | trunc (int (sub 62 (len .suffix))) | trimSuffix "-") .suffix }}
{{- end }}

{{- define "keyward.managerName" -}}
{{- include "keyward.suffixed" (dict "ctx" . "suffix" "manager") }}
{{- end }}

{{- define "keyward.webhookServiceName" -}}
{{- include "keyward.suffixed" (dict "ctx" . "suffix" "webhook") }}
{{- end }}

{{- define "keyward.webhookConfigurationName" -}}
{{- include "keyward.suffixed" (dict "ctx" . "suffix" "injector") }}
{{- end }}

{{- define "keyward.webhookSecretName" -}}
{{- include "keyward.suffixed" (dict "ctx" . "suffix" "webhook-cert") }}
{{- end }}

{{- define "keyward.metricsServiceName" -}}
{{- include "keyward.suffixed" (dict "ctx" . "suffix" "metrics") }}
{{- end }}

{{- define "keyward.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "keyward.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The webhook serving certificate: the manager's own (self) or cert-manager's (external). */}}
{{- define "keyward.webhookCertMode" -}}
{{- if .Values.webhook.certManager.enabled }}external{{ else }}self{{ end }}
{{- end }}

{{- define "keyward.webhookCertDir" -}}
/tmp/k8s-webhook-server/serving-certs
{{- end }}

{{/* Labels. */}}
{{- define "keyward.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "keyward.labels" -}}
helm.sh/chart: {{ include "keyward.chart" . }}
{{ include "keyward.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: keyward
{{- end }}

{{- define "keyward.selectorLabels" -}}
app.kubernetes.io/name: {{ include "keyward.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* componentLabels "component": the labels of one component's objects. */}}
{{- define "keyward.componentLabels" -}}
{{ include "keyward.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "keyward.managerSelectorLabels" -}}
{{ include "keyward.selectorLabels" . }}
app.kubernetes.io/component: manager
{{- end }}

{{/* Images. */}}
{{- define "keyward.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
The verifier image: the manager's unless verifier.image sets a repository, tag or digest;
then an empty repository is image.repository and an empty tag image.tag, then appVersion.
*/}}
{{- define "keyward.verifierImage" -}}
{{- $v := .Values.verifier.image }}
{{- if not (or $v.repository $v.tag $v.digest) }}
{{- include "keyward.image" . }}
{{- else }}
{{- $repo := default .Values.image.repository $v.repository }}
{{- if $v.digest }}
{{- printf "%s@%s" $repo $v.digest }}
{{- else }}
{{- printf "%s:%s" $repo (default (default .Chart.AppVersion .Values.image.tag) $v.tag) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
quantityBytes: a Kubernetes memory quantity ("256Mi", "1G", "0.5Gi", 268435456) in bytes,
as a float. The schema restricts memory quantities to what this parses.
*/}}
{{- define "keyward.quantityBytes" -}}
{{- $q := toString . }}
{{- $units := dict "" 1.0 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "P" 1e15 "E" 1e18 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 "Pi" 1125899906842624.0 "Ei" 1152921504606846976.0 }}
{{- $m := regexFindAll "^([0-9]+(?:\\.[0-9]+)?)(k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$" $q -1 }}
{{- if not $m }}
{{- fail (printf "cannot read the memory quantity %q: use a number with an optional suffix (Ki, Mi, Gi, ... or k, M, G, ...)" $q) }}
{{- end }}
{{- $num := regexReplaceAll "^([0-9]+(?:\\.[0-9]+)?)(.*)$" $q "${1}" }}
{{- $unit := regexReplaceAll "^([0-9]+(?:\\.[0-9]+)?)(.*)$" $q "${2}" }}
{{- mulf (float64 $num) (get $units $unit) }}
{{- end }}

{{/*
goMemLimit: the manager's GOMEMLIMIT. manager.goMemLimit when set; else 90% of the memory
limit in bytes (rounded down), leaving the Go runtime room below the limit before the
kernel's OOM killer; empty without a memory limit.
*/}}
{{- define "keyward.goMemLimit" -}}
{{- if .Values.manager.goMemLimit }}
{{- .Values.manager.goMemLimit }}
{{- else }}
{{- $limit := dig "limits" "memory" "" .Values.manager.resources }}
{{- if $limit }}
{{- $bytes := include "keyward.quantityBytes" $limit | float64 }}
{{- printf "%.0f" (floor (mulf $bytes 0.9)) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The webhook's namespaceSelector: the configured one, with the release namespace and
kube-system always excluded, so the operator can never block its own pods (or the
control plane's) from starting.
*/}}
{{- define "keyward.webhookNamespaceSelector" -}}
{{- $sel := deepCopy (default dict .Values.webhook.namespaceSelector) }}
{{- $exprs := default list $sel.matchExpressions }}
{{- $exclude := dict "key" "kubernetes.io/metadata.name" "operator" "NotIn" "values" (uniq (list .Release.Namespace "kube-system")) }}
{{- $_ := set $sel "matchExpressions" (append $exprs $exclude) }}
{{- toYaml $sel }}
{{- end }}
