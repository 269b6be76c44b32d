{{/*
Helpers of the scrm chart. Every helper is namespaced `scrm.`.
Component helpers take a dict: (dict "context" $ "component" "ingest").
*/}}

{{/* Chart name, overridable with nameOverride. */}}
{{- define "scrm.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Fully qualified app name: release-chart, shortened to 63 characters (DNS label limit). */}}
{{- define "scrm.fullname" -}}
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

{{/* Chart name and version, as used by the helm.sh/chart label. */}}
{{- define "scrm.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Namespace of every resource. */}}
{{- define "scrm.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every resource. */}}
{{- define "scrm.labels" -}}
helm.sh/chart: {{ include "scrm.chart" . }}
{{ include "scrm.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: scrm
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of the release. */}}
{{- define "scrm.selectorLabels" -}}
app.kubernetes.io/name: {{ include "scrm.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Name of a component's resources: <fullname>-<component>. */}}
{{- define "scrm.component.fullname" -}}
{{- printf "%s-%s" (include "scrm.fullname" .context) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of a component's resources. */}}
{{- define "scrm.component.labels" -}}
{{ include "scrm.labels" .context }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Selector labels of a component's pods. */}}
{{- define "scrm.component.selectorLabels" -}}
{{ include "scrm.selectorLabels" .context }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Annotations every resource carries (commonAnnotations), as a YAML map or nothing. */}}
{{- define "scrm.annotations" -}}
{{- with .Values.commonAnnotations }}
{{- toYaml . }}
{{- end }}
{{- end -}}

{{/* The image reference: registry/repository:tag or @digest; the tag defaults to the appVersion. */}}
{{- define "scrm.image" -}}
{{- $repository := .Values.image.repository -}}
{{- if .Values.image.registry -}}
{{- $repository = printf "%s/%s" .Values.image.registry .Values.image.repository -}}
{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag | toString) -}}
{{- end -}}
{{- end -}}

{{/* Name of the ServiceAccount the pods run as. */}}
{{- define "scrm.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "scrm.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Name of the Secret the chart manages. */}}
{{- define "scrm.secretName" -}}
{{- include "scrm.fullname" . -}}
{{- end -}}

{{/* Secret (and key) holding the database URL. */}}
{{- define "scrm.postgresql.secretName" -}}
{{- default (include "scrm.secretName" .) .Values.postgresql.existingSecret -}}
{{- end -}}
{{- define "scrm.postgresql.secretKey" -}}
{{- ternary .Values.postgresql.existingSecretKey "database-url" (not (empty .Values.postgresql.existingSecret)) -}}
{{- end -}}

{{/* Secret holding the WhatsApp app secret and verify token, and their keys. */}}
{{- define "scrm.whatsapp.secretName" -}}
{{- default (include "scrm.secretName" .) .Values.whatsapp.existingSecret -}}
{{- end -}}
{{- define "scrm.whatsapp.appSecretKey" -}}
{{- ternary .Values.whatsapp.existingSecretKeys.appSecret "whatsapp-app-secret" (not (empty .Values.whatsapp.existingSecret)) -}}
{{- end -}}
{{- define "scrm.whatsapp.verifyTokenKey" -}}
{{- ternary .Values.whatsapp.existingSecretKeys.verifyToken "whatsapp-verify-token" (not (empty .Values.whatsapp.existingSecret)) -}}
{{- end -}}

{{/* Secret holding the bootstrap tenant values. */}}
{{- define "scrm.bootstrap.secretName" -}}
{{- default (include "scrm.secretName" .) .Values.bootstrap.existingSecret -}}
{{- end -}}
{{- define "scrm.bootstrap.secretKey" -}}
{{- $keys := dict "tenant" "bootstrap-tenant" "apiKey" "bootstrap-api-key" "phoneNumberId" "bootstrap-phone-number-id" "accessToken" "bootstrap-access-token" -}}
{{- if .context.Values.bootstrap.existingSecret -}}
{{- index .context.Values.bootstrap.existingSecretKeys .key -}}
{{- else -}}
{{- index $keys .key -}}
{{- end -}}
{{- end -}}

{{/* Secret holding the installation's own secrets (internal token, operator token, secrets key, link secret), and their keys. */}}
{{- define "scrm.auth.secretName" -}}
{{- default (include "scrm.secretName" .) .Values.auth.existingSecret -}}
{{- end -}}
{{- define "scrm.auth.secretKey" -}}
{{- $keys := dict "internalToken" "internal-token" "adminToken" "admin-token" "secretsKey" "secrets-key" "linkSecret" "link-secret" -}}
{{- if .context.Values.auth.existingSecret -}}
{{- index .context.Values.auth.existingSecretKeys .key -}}
{{- else -}}
{{- index $keys .key -}}
{{- end -}}
{{- end -}}

{{/*
The data of the chart's Secret (base64), one `key: value` line per value the chart manages: those not
taken from an existing Secret. Fails when a required secret is neither given nor in an existing Secret.
*/}}
{{- define "scrm.secretData" -}}
{{- if not .Values.postgresql.existingSecret }}
database-url: {{ required "postgresql.url (postgresql+asyncpg://user:password@host:5432/db) or postgresql.existingSecret is required" .Values.postgresql.url | b64enc | quote }}
{{- end }}
{{- if not .Values.whatsapp.existingSecret }}
whatsapp-app-secret: {{ required "whatsapp.appSecret (the Meta app secret) or whatsapp.existingSecret is required" .Values.whatsapp.appSecret | b64enc | quote }}
whatsapp-verify-token: {{ required "whatsapp.verifyToken or whatsapp.existingSecret is required" .Values.whatsapp.verifyToken | b64enc | quote }}
{{- end }}
{{- if not .Values.auth.existingSecret }}
internal-token: {{ required "auth.internalToken (a random value; services present it to ingest's key introspection) or auth.existingSecret is required" .Values.auth.internalToken | b64enc | quote }}
admin-token: {{ required "auth.adminToken (the operator token of /v1/admin/...) or auth.existingSecret is required" .Values.auth.adminToken | b64enc | quote }}
secrets-key: {{ required "auth.secretsKey (a Fernet key: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())') or auth.existingSecret is required" .Values.auth.secretsKey | b64enc | quote }}
{{- if include "scrm.links.secretSet" . }}
link-secret: {{ required "auth.linkSecret (a random value: openssl rand -hex 32; signs resume links and keys short-link codes) or auth.existingSecret is required in prod" .Values.auth.linkSecret | b64enc | quote }}
{{- end }}
{{- end }}
{{- if not .Values.bootstrap.existingSecret }}
{{- with .Values.bootstrap.tenant }}
bootstrap-tenant: {{ . | toString | b64enc | quote }}
{{- end }}
{{- with .Values.bootstrap.apiKey }}
bootstrap-api-key: {{ . | toString | b64enc | quote }}
{{- end }}
{{- with .Values.bootstrap.phoneNumberId }}
bootstrap-phone-number-id: {{ . | toString | b64enc | quote }}
{{- end }}
{{- with .Values.bootstrap.accessToken }}
bootstrap-access-token: {{ . | toString | b64enc | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* In-cluster URL of ingest (services introspect tenant keys through it). */}}
{{- define "scrm.ingest.url" -}}
{{- printf "http://%s:%v" (include "scrm.component.fullname" (dict "context" . "component" "ingest")) .Values.ingest.service.port -}}
{{- end -}}

{{/* In-cluster URL of the sender (the trigger-engine asks it for the templates a settings change names). */}}
{{- define "scrm.sender.url" -}}
{{- printf "http://%s:%v" (include "scrm.component.fullname" (dict "context" . "component" "sender")) .Values.sender.service.port -}}
{{- end -}}

{{/* Environment every service reads through CommonSettings. */}}
{{- define "scrm.env.common" -}}
- name: SCRM_ENV
  value: {{ .Values.environment | quote }}
- name: SCRM_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: SCRM_BIND_HOST
  value: "0.0.0.0"
- name: SCRM_KAFKA_BOOTSTRAP
  value: {{ required "kafka.bootstrap (host:port of the Kafka cluster) is required" .Values.kafka.bootstrap | quote }}
- name: SCRM_TOPIC_PARTITIONS
  value: {{ .Values.kafka.topicPartitions | quote }}
- name: SCRM_TOPIC_REPLICATION
  value: {{ .Values.kafka.topicReplication | quote }}
- name: SCRM_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "scrm.postgresql.secretName" . }}
      key: {{ include "scrm.postgresql.secretKey" . }}
- name: SCRM_DATABASE_POOL_SIZE
  value: {{ .Values.postgresql.poolSize | quote }}
- name: SCRM_INGEST_URL
  value: {{ include "scrm.ingest.url" . | quote }}
- name: SCRM_INTERNAL_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "scrm.auth.secretName" . }}
      key: {{ include "scrm.auth.secretKey" (dict "context" . "key" "internalToken") }}
{{- if include "scrm.links.user" . }}
{{ include "scrm.env.links" . }}
{{- end }}
{{- end -}}

{{/*
Short links (R-R4, R-T6.5): ingest serves them, the trigger-engine writes them; only those two get the link
secret and the public base URL. "scrm.links.user" is non-empty when the file being rendered is one of their
templates (so the deployments need no change of their own).
*/}}
{{- define "scrm.links.user" -}}
{{- if or (contains "/templates/ingest/" .Template.Name) (contains "/templates/trigger-engine/" .Template.Name) -}}
true
{{- end -}}
{{- end -}}

{{/* Non-empty when the link secret is set: always in prod (required), elsewhere only when given. */}}
{{- define "scrm.links.secretSet" -}}
{{- if or .Values.auth.existingSecret .Values.auth.linkSecret (eq .Values.environment "prod") -}}
true
{{- end -}}
{{- end -}}

{{/* The short-link environment of ingest and the trigger-engine. */}}
{{- define "scrm.env.links" -}}
- name: SCRM_PUBLIC_BASE_URL
  value: {{ .Values.links.publicBaseUrl | quote }}
{{- if include "scrm.links.secretSet" . }}
- name: SCRM_LINK_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "scrm.auth.secretName" . }}
      key: {{ include "scrm.auth.secretKey" (dict "context" . "key" "linkSecret") }}
{{- end }}
{{- end -}}

{{/* The installation operator's token (ingest: /v1/admin/...). */}}
{{- define "scrm.env.adminToken" -}}
- name: SCRM_ADMIN_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "scrm.auth.secretName" . }}
      key: {{ include "scrm.auth.secretKey" (dict "context" . "key" "adminToken") }}
{{- end -}}

{{/* The Fernet key the sender encrypts access tokens with at rest. */}}
{{- define "scrm.env.secretsKey" -}}
- name: SCRM_SECRETS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "scrm.auth.secretName" . }}
      key: {{ include "scrm.auth.secretKey" (dict "context" . "key" "secretsKey") }}
{{- end -}}

{{/* The webhook secrets (ingest). */}}
{{- define "scrm.env.whatsappSecrets" -}}
- name: SCRM_WHATSAPP_APP_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "scrm.whatsapp.secretName" . }}
      key: {{ include "scrm.whatsapp.appSecretKey" . }}
- name: SCRM_WHATSAPP_VERIFY_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "scrm.whatsapp.secretName" . }}
      key: {{ include "scrm.whatsapp.verifyTokenKey" . }}
{{- end -}}

{{/* Bootstrap values, one helper each: services read different subsets. Missing keys keep the defaults. */}}
{{- define "scrm.env.bootstrapTenant" -}}
- name: SCRM_BOOTSTRAP_TENANT
  valueFrom:
    secretKeyRef:
      name: {{ include "scrm.bootstrap.secretName" . }}
      key: {{ include "scrm.bootstrap.secretKey" (dict "context" . "key" "tenant") }}
      optional: true
{{- end -}}
{{- define "scrm.env.bootstrapApiKey" -}}
- name: SCRM_BOOTSTRAP_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "scrm.bootstrap.secretName" . }}
      key: {{ include "scrm.bootstrap.secretKey" (dict "context" . "key" "apiKey") }}
      optional: true
{{- end -}}
{{- define "scrm.env.bootstrapPhoneNumberId" -}}
- name: SCRM_BOOTSTRAP_PHONE_NUMBER_ID
  valueFrom:
    secretKeyRef:
      name: {{ include "scrm.bootstrap.secretName" . }}
      key: {{ include "scrm.bootstrap.secretKey" (dict "context" . "key" "phoneNumberId") }}
      optional: true
{{- end -}}
{{- define "scrm.env.bootstrapAccessToken" -}}
- name: SCRM_BOOTSTRAP_ACCESS_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "scrm.bootstrap.secretName" . }}
      key: {{ include "scrm.bootstrap.secretKey" (dict "context" . "key" "accessToken") }}
      optional: true
{{- end -}}

{{/*
Pod template metadata annotations of a component: checksum of the chart's Secret (restart on change),
Prometheus scrape hints, global and component podAnnotations.
Takes (dict "context" $ "values" .Values.<component>).
*/}}
{{- define "scrm.component.podAnnotations" -}}
{{- $ctx := .context -}}
checksum/secret: {{ include "scrm.secretData" $ctx | sha256sum }}
{{- if $ctx.Values.metrics.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .values.containerPort | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- with $ctx.Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- with .values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Pod-level settings every service shares. */}}
{{- define "scrm.pod.common" -}}
serviceAccountName: {{ include "scrm.serviceAccountName" . }}
automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Probes on the `http` port: startup and liveness on /healthz, readiness on /readyz. */}}
{{- define "scrm.container.probes" -}}
startupProbe:
  httpGet:
    path: /healthz
    port: http
  periodSeconds: {{ .Values.probes.startup.periodSeconds }}
  failureThreshold: {{ .Values.probes.startup.failureThreshold }}
livenessProbe:
  httpGet:
    path: /healthz
    port: http
  periodSeconds: {{ .Values.probes.liveness.periodSeconds }}
  timeoutSeconds: {{ .Values.probes.liveness.timeoutSeconds }}
  failureThreshold: {{ .Values.probes.liveness.failureThreshold }}
readinessProbe:
  httpGet:
    path: /readyz
    port: http
  periodSeconds: {{ .Values.probes.readiness.periodSeconds }}
  timeoutSeconds: {{ .Values.probes.readiness.timeoutSeconds }}
  failureThreshold: {{ .Values.probes.readiness.failureThreshold }}
{{- end -}}

{{/* Container-level settings every service shares (after the env list). */}}
{{- define "scrm.container.common" -}}
image: {{ include "scrm.image" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
{{- with .Values.containerSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumeMounts:
  - name: tmp
    mountPath: /tmp
{{- end -}}
