{{/*
Names. Every object is prefixed with the full name, cluster-scoped ones too,
so two releases never clash.
*/}}
{{- define "siesta.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "siesta.fullname" -}}
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

{{- define "siesta.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object names of the two components (suffix fits in 63 with the trunc). */}}
{{- define "siesta.controller.fullname" -}}
{{- printf "%s-controller" (include "siesta.fullname" . | trunc 52 | trimSuffix "-") }}
{{- end }}

{{- define "siesta.activator.fullname" -}}
{{- printf "%s-activator" (include "siesta.fullname" . | trunc 52 | trimSuffix "-") }}
{{- end }}

{{/*
Labels. `app.kubernetes.io/name: siesta` and `app.kubernetes.io/component`
are a contract, not decoration: the activator finds controller pods by
`app.kubernetes.io/name=siesta,app.kubernetes.io/component=controller`, and
the autoscaler finds activator pods by
`app.kubernetes.io/name=siesta,app.kubernetes.io/component=activator`.
So the name label is always `siesta`, whatever nameOverride says.
*/}}
{{- define "siesta.labels" -}}
helm.sh/chart: {{ include "siesta.chart" . }}
app.kubernetes.io/name: siesta
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: siesta
{{- end }}

{{- define "siesta.selectorLabels" -}}
app.kubernetes.io/name: siesta
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "siesta.controller.labels" -}}
{{ include "siesta.labels" . }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "siesta.controller.selectorLabels" -}}
{{ include "siesta.selectorLabels" . }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "siesta.activator.labels" -}}
{{ include "siesta.labels" . }}
app.kubernetes.io/component: activator
{{- end }}

{{- define "siesta.activator.selectorLabels" -}}
{{ include "siesta.selectorLabels" . }}
app.kubernetes.io/component: activator
{{- end }}

{{- define "siesta.controller.serviceAccountName" -}}
{{- if .Values.controller.serviceAccount.create }}
{{- default (include "siesta.controller.fullname" .) .Values.controller.serviceAccount.name }}
{{- else }}
{{- required "controller.serviceAccount.name is required when controller.serviceAccount.create is false" .Values.controller.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "siesta.activator.serviceAccountName" -}}
{{- if .Values.activator.serviceAccount.create }}
{{- default (include "siesta.activator.fullname" .) .Values.activator.serviceAccount.name }}
{{- else }}
{{- required "activator.serviceAccount.name is required when activator.serviceAccount.create is false" .Values.activator.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "siesta.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Host part of listen addresses: the pod IP (from the downward API) or all interfaces. */}}
{{- define "siesta.bindHost" -}}
{{- if .Values.listenOnPodIP }}$(POD_IP){{ else }}0.0.0.0{{ end }}
{{- end }}

{{/* Environment common to both components: identity from the downward API, logging. */}}
{{- define "siesta.commonEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
{{- if .Values.logLevel }}
- name: SIESTA_LOG
  value: {{ .Values.logLevel | quote }}
{{- end }}
{{- end }}

{{/* A preferred anti-affinity that spreads a component's replicas over nodes. */}}
{{- define "siesta.spreadAffinity" -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "siesta.selectorLabels" .root | nindent 12 }}
            app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
API versions that moved after 1.20: the GA version unless the cluster serves
only the beta one (1.20: policy/v1beta1, autoscaling/v2beta2).
*/}}
{{- define "siesta.pdb.apiVersion" -}}
{{- if and (not (.Capabilities.APIVersions.Has "policy/v1/PodDisruptionBudget")) (.Capabilities.APIVersions.Has "policy/v1beta1/PodDisruptionBudget") }}policy/v1beta1{{ else }}policy/v1{{ end }}
{{- end }}

{{- define "siesta.hpa.apiVersion" -}}
{{- if and (not (.Capabilities.APIVersions.Has "autoscaling/v2/HorizontalPodAutoscaler")) (.Capabilities.APIVersions.Has "autoscaling/v2beta2/HorizontalPodAutoscaler") }}autoscaling/v2beta2{{ else }}autoscaling/v2{{ end }}
{{- end }}

{{- define "siesta.leaseName" -}}
{{- default (include "siesta.controller.fullname" .) .Values.controller.leaderElection.leaseName }}
{{- end }}
