{{- define "tracardi.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tracardi.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* selector labels; call with (dict "root" $ "component" "api") */}}
{{- define "tracardi.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "tracardi.image" -}}
{{ printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) | quote }}
{{- end -}}

{{- define "tracardi.secretName" -}}
{{- .Values.secret.existingSecret | default (printf "%s-env" (include "tracardi.fullname" .)) -}}
{{- end -}}

{{/* The worker.<type> values the hook Job writes into the worker settings (apply_helm_values). */}}
{{- define "tracardi.workerValuesJson" -}}
{{- $workers := dict -}}
{{- range $type := list "collector" "background" "workflow" -}}
{{- $_ := set $workers $type (index $.Values.worker $type) -}}
{{- end -}}
{{- dict "worker" $workers | toJson -}}
{{- end -}}

{{/* envFrom and env of every container */}}
{{- define "tracardi.env" -}}
envFrom:
  - secretRef:
      name: {{ include "tracardi.secretName" . }}
env:
  {{- range $name, $value := .Values.env }}
  - name: {{ $name }}
    value: {{ $value | toString | quote }}
  {{- end }}
{{- end -}}

{{- define "tracardi.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
