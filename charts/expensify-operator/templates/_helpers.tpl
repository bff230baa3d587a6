{{- define "expensify-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "expensify-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "expensify-operator.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "expensify-operator.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "expensify-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "expensify-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "expensify-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "expensify-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "expensify-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "expensify-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The rules the controller needs in every namespace it watches (see README: RBAC). */}}
{{- define "expensify-operator.rules" -}}
- apiGroups: ["expensify.gitops.dev"]
  resources: ["expensifyconnectors"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["expensify.gitops.dev"]
  resources: ["policyaccesses"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["expensify.gitops.dev"]
  resources: ["expensifyconnectors/status", "policyaccesses/status"]
  verbs: ["patch"]
- apiGroups: ["expensify.gitops.dev"]
  resources: ["accessrequests"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["expensify.gitops.dev"]
  resources: ["accessdecisions"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["expensify.gitops.dev"]
  resources: ["accessrequests/status", "accessrequests/finalizers", "accessdecisions/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["secrets"]
  {{- if .Values.secretWatch.enabled }}
  verbs: ["get", "list", "watch"]
  {{- else }}
  verbs: ["get"]
  {{- end }}
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* admission.usernamePrefix, refused unless it is safe inside a CEL string literal and an
argument: it is templated into the admission policy's expressions. */}}
{{- define "expensify-operator.usernamePrefix" -}}
{{- $prefix := toString .Values.admission.usernamePrefix }}
{{- if not (regexMatch "^[A-Za-z0-9._:@/-]*$" $prefix) }}
{{- fail "admission.usernamePrefix may hold only letters, digits and . _ : @ / -" }}
{{- end }}
{{- $prefix }}
{{- end }}
