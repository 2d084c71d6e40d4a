{{/* Names, labels, and the settings every template shares. */}}

{{- define "odradek.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "odradek.fullname" -}}
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

{{- define "odradek.selectorLabels" -}}
app.kubernetes.io/name: {{ include "odradek.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: agent
{{- end }}

{{- define "odradek.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "odradek.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "odradek.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "odradek.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "odradek.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The headless Service: every agent's address, for Kafka bootstraps and scrapes. */}}
{{- define "odradek.headlessName" -}}
{{- printf "%s-agents" (include "odradek.fullname" . | trunc 56 | trimSuffix "-") }}
{{- end }}

{{/* The cluster's name in etcd: cluster.name, else the release's full name. */}}
{{- define "odradek.clusterName" -}}
{{- $name := default (include "odradek.fullname" .) .Values.cluster.name }}
{{- if not (regexMatch "^[A-Za-z0-9_-]{1,63}$" $name) }}
{{- fail (printf "cluster.name %q: letters, digits, '_' and '-' only, at most 63 characters" $name) }}
{{- end }}
{{- $name }}
{{- end }}

{{/* The cells the topics spread over: 1 to 64. Above 1, each cell's Kafka door listens
on ports.kafka plus the cell's index (no other door may take one of those ports). */}}
{{- define "odradek.cells" -}}
{{- $cells := int .Values.cluster.cells }}
{{- if or (lt $cells 1) (gt $cells 64) }}
{{- fail (printf "cluster.cells %v: a whole number from 1 to 64" .Values.cluster.cells) }}
{{- end }}
{{- $last := add .Values.ports.kafka $cells -1 }}
{{- if and .Values.kafka.enabled (gt $last 65535) }}
{{- fail (printf "ports.kafka %v with cluster.cells %d: each cell's Kafka door listens on ports.kafka plus the cell's index, up to %d, above 65535: lower ports.kafka" .Values.ports.kafka $cells $last) }}
{{- end }}
{{- if and .Values.kafka.enabled (gt $cells 1) }}
{{- $doors := dict "flight" .Values.ports.flight "metrics" .Values.ports.metrics }}
{{- if .Values.registry.enabled }}
{{- $_ := set $doors "registry" .Values.ports.registry }}
{{- end }}
{{- range $door, $port := $doors }}
{{- if and (ge (int $port) (int $.Values.ports.kafka)) (le (int $port) (int $last)) }}
{{- fail (printf "ports.%s %v is one of the Kafka doors' ports with cluster.cells %d (ports.kafka %v to %d): move one of them" $door $port $cells $.Values.ports.kafka $last) }}
{{- end }}
{{- end }}
{{- end }}
{{- $cells }}
{{- end }}

{{/* The Kafka doors' container ports: ports.kafka for the home cell (named kafka), then
one a cell, ports.kafka plus the cell's index (kafka-1, kafka-2, ...). */}}
{{- define "odradek.kafkaPorts" -}}
{{- $cells := int (include "odradek.cells" .) }}
{{- range $index := until $cells }}
- name: {{ ternary "kafka" (printf "kafka-%d" $index) (eq $index 0) }}
  containerPort: {{ add $.Values.ports.kafka $index }}
  protocol: TCP
{{- end }}
{{- end }}

{{/* The etcd dependency's full name, as its own chart computes it. */}}
{{- define "odradek.etcdFullname" -}}
{{- if .Values.etcd.fullnameOverride }}
{{- .Values.etcd.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default "etcd" .Values.etcd.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* ODRADEK_ETCD: every member's URL, comma-separated. */}}
{{- define "odradek.etcdEndpoints" -}}
{{- $endpoints := list }}
{{- if .Values.etcd.enabled }}
{{- if .Values.etcd.endpoints }}
{{- fail "etcd.endpoints is for an etcd of yours: set etcd.enabled=false with it (etcd.enabled=true deploys etcd with the release)" }}
{{- end }}
{{- $fullname := include "odradek.etcdFullname" . }}
{{- $members := int (default 1 .Values.etcd.replicaCount) }}
{{- range $index := until $members }}
{{- $scheme := ternary "https" "http" $.Values.etcdClient.tls.enabled }}
{{- $endpoints = append $endpoints (printf "%s://%s-%d.%s-headless.%s.svc.%s:2379" $scheme $fullname $index $fullname $.Release.Namespace $.Values.clusterDomain) }}
{{- end }}
{{- else }}
{{- if not .Values.etcd.endpoints }}
{{- fail "etcd.endpoints is empty: give the URL of every member of your etcd (http://HOST:2379, or https://HOST:2379 with etcdClient.tls.enabled), or set etcd.enabled=true to deploy etcd with the release" }}
{{- end }}
{{- $endpoints = .Values.etcd.endpoints }}
{{- end }}
{{- if gt (len $endpoints) 16 }}
{{- fail (printf "%d etcd endpoints given, at most 16" (len $endpoints)) }}
{{- end }}
{{- range $endpoints }}
{{- if not (regexMatch "^https?://[A-Za-z0-9_.\\[\\]:-]+(:[0-9]{1,5})?/?$" (toString .)) }}
{{- fail (printf "etcd endpoint %q: expected http://HOST:PORT or https://HOST:PORT" (toString .)) }}
{{- end }}
{{- if and $.Values.etcdClient.tls.enabled (hasPrefix "http://" (toString .)) }}
{{- fail (printf "etcd endpoint %q is http:// but etcdClient.tls.enabled is true: write https://" (toString .)) }}
{{- end }}
{{- if and (not $.Values.etcdClient.tls.enabled) (hasPrefix "https://" (toString .)) }}
{{- fail (printf "etcd endpoint %q is https://: set etcdClient.tls.enabled=true (and etcdClient.tls.existingSecret for its CA)" (toString .)) }}
{{- end }}
{{- end }}
{{- join "," $endpoints }}
{{- end }}

{{/* ODRADEK_STORE_OPTIONS: key=value,key=value, sorted. */}}
{{- define "odradek.storeOptions" -}}
{{- $pairs := list }}
{{- range $key, $value := .Values.store.options }}
{{- $text := toString $value }}
{{- if or (contains "," $text) (contains "," $key) (contains "=" $key) }}
{{- fail (printf "store.options.%s: neither the name nor the value may hold ',' (nor the name '=')" $key) }}
{{- end }}
{{- $pairs = append $pairs (printf "%s=%s" $key $text) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}

{{/* The Secret holding the store's credentials, if any. */}}
{{- define "odradek.credentialsSecret" -}}
{{- if .Values.store.credentials.existingSecret }}
{{- .Values.store.credentials.existingSecret }}
{{- else if .Values.store.credentials.env }}
{{- printf "%s-store" (include "odradek.fullname" . | trunc 57 | trimSuffix "-") }}
{{- end }}
{{- end }}

{{/* Refuse settings that cannot work, before anything is applied. */}}
{{- define "odradek.validate" -}}
{{- if not .Values.store.url }}
{{- fail "store.url is required: the object store every agent shares (s3://bucket/prefix, gs://bucket/prefix, az://container/prefix)" }}
{{- end }}
{{- if not (regexMatch "^(s3|gs|az)://[^/]+" .Values.store.url) }}
{{- fail (printf "store.url %q: agents on several nodes share an object store (s3://, gs://, az://); file:// and memory:// are one machine's" .Values.store.url) }}
{{- end }}
{{- $ttl := int .Values.cluster.leaseTtlSeconds }}
{{- if or (lt $ttl 1) (gt $ttl 60) }}
{{- fail (printf "cluster.leaseTtlSeconds must be from 1 to 60, got %v" .Values.cluster.leaseTtlSeconds) }}
{{- end }}
{{- range $name, $value := .Values.store.credentials.env }}
{{- if not (regexMatch "^[A-Za-z_][A-Za-z0-9_]*$" $name) }}
{{- fail (printf "store.credentials.env: %q is not an environment variable name" $name) }}
{{- end }}
{{- end }}
{{- with .Values.etcdClient.tls }}
{{- if and .existingSecret (not .enabled) }}
{{- fail "etcdClient.tls.existingSecret is for TLS: set etcdClient.tls.enabled=true (and https:// endpoints)" }}
{{- end }}
{{- if ne (empty .certKey) (empty .keyKey) }}
{{- fail "etcdClient.tls.certKey and etcdClient.tls.keyKey go together: a client certificate and its key" }}
{{- end }}
{{- if and .existingSecret (not .caKey) (not .certKey) }}
{{- fail "etcdClient.tls.existingSecret is mounted for nothing: name its CA (caKey) and/or client certificate (certKey, keyKey)" }}
{{- end }}
{{- if and (not .existingSecret) (or .certKey .keyKey) }}
{{- fail "etcdClient.tls.certKey/keyKey name keys of etcdClient.tls.existingSecret: give the Secret" }}
{{- end }}
{{- end }}
{{- with .Values.etcdClient.auth }}
{{- if and .user (not .existingSecret) }}
{{- fail "etcdClient.auth.user needs etcdClient.auth.existingSecret: the Secret holding its password (key etcdClient.auth.passwordKey)" }}
{{- end }}
{{- if and .existingSecret (not .user) }}
{{- fail "etcdClient.auth.existingSecret needs etcdClient.auth.user: the etcd user whose password it holds" }}
{{- end }}
{{- end }}
{{- if and .Values.autoscaling.enabled (lt (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.minReplicas)) }}
{{- fail "autoscaling.maxReplicas must be at least autoscaling.minReplicas" }}
{{- end }}
{{- end }}

{{/* Where the etcd TLS Secret's files are mounted. */}}
{{- define "odradek.etcdTlsDirectory" -}}
/etc/odradek/etcd-tls
{{- end }}
