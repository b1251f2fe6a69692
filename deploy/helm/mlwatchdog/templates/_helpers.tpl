{{/* The release's base name: the release name when it contains "mlwatchdog" (helm install
mlwatchdog ... gives the kustomize base's names), else <release>-mlwatchdog. */}}
{{- define "mlwatchdog.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "mlwatchdog.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mlwatchdog.labels" -}}
{{ include "mlwatchdog.selectorLabels" . }}
app.kubernetes.io/part-of: mlwatchdog
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "mlwatchdog.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) -}}
{{- end -}}
{{- end -}}

{{/* rules.yaml as text: .Values.config (a string, or a map written out as YAML), else the
kustomize base's rules shipped in files/rules.yaml. */}}
{{- define "mlwatchdog.configText" -}}
{{- if not .Values.config -}}
{{- .Files.Get "files/rules.yaml" -}}
{{- else if kindIs "string" .Values.config -}}
{{- .Values.config -}}
{{- else -}}
{{- toYaml .Values.config -}}
{{- end -}}
{{- end -}}

{{/* The config parsed, checked for what the pod depends on; as JSON, for fromJson. */}}
{{- define "mlwatchdog.configChecked" -}}
{{- $cfg := include "mlwatchdog.configText" . | fromYaml -}}
{{- if hasKey $cfg "Error" -}}
{{- fail (printf "config: not YAML: %s" (get $cfg "Error")) -}}
{{- end -}}
{{- $host := dig "daemon" "http" "host" "127.0.0.1" $cfg | toString -}}
{{- if not (has $host (list "0.0.0.0" "::")) -}}
{{- fail (printf "config: daemon.http.host is %s, which the probes, the Service and Prometheus cannot reach in a pod: set daemon.http.host: 0.0.0.0" $host) -}}
{{- end -}}
{{- $election := dig "daemon" "leader_election" "enabled" "unset" $cfg | toString -}}
{{- if and (gt (int .Values.replicas) 1) (eq $election "false") -}}
{{- fail (printf "replicas is %d but the config sets daemon.leader_election.enabled: false: two replicas would both patch workloads; enable leader election or set replicas: 1" (int .Values.replicas)) -}}
{{- end -}}
{{- toJson $cfg -}}
{{- end -}}

{{/* The container port: the config's daemon.http.port. */}}
{{- define "mlwatchdog.port" -}}
{{- $cfg := include "mlwatchdog.configChecked" . | fromJson -}}
{{- dig "daemon" "http" "port" 8080 $cfg | int -}}
{{- end -}}

{{/* The sink tier (sink.enabled): its pods' selector labels, apart from the daemon's so that
the daemon's Services, PodDisruptionBudget and NetworkPolicy never select them. */}}
{{- define "mlwatchdog.sinkSelectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}-sink
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mlwatchdog.sinkLabels" -}}
{{ include "mlwatchdog.sinkSelectorLabels" . }}
app.kubernetes.io/part-of: mlwatchdog
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Where the shared sink volume is mounted, in the sink pods and the daemon's. */}}
{{- define "mlwatchdog.sinkPath" -}}
/var/lib/mlwatchdog/sink
{{- end -}}

{{/* sink.enabled: the config must have a `type: kserve` source (else `mlwatchdog sink` stops:
there is nothing to store for) and store where the shared volume is mounted. */}}
{{- define "mlwatchdog.sinkChecked" -}}
{{- $cfg := include "mlwatchdog.configChecked" . | fromJson -}}
{{- $kserve := false -}}
{{- range $name, $source := (get $cfg "sources" | default dict) -}}
{{- if eq (toString (get $source "type")) "kserve" -}}{{- $kserve = true -}}{{- end -}}
{{- end -}}
{{- if not $kserve -}}
{{- fail "sink.enabled: the config has no source of `type: kserve`, so the sink pods would have nothing to store for: add one (README, KServe payload logger), or set sink.enabled: false" -}}
{{- end -}}
{{- $path := dig "daemon" "sink" "path" "" $cfg | toString -}}
{{- if ne $path (include "mlwatchdog.sinkPath" .) -}}
{{- fail (printf "sink.enabled: the config's daemon.sink.path is %q, but the shared sink volume is mounted at %s: set daemon.sink.path: %s" $path (include "mlwatchdog.sinkPath" .) (include "mlwatchdog.sinkPath" .)) -}}
{{- end -}}
{{- end -}}
