// The console's client of the server it is served by: the HTTP API (/v1), the
// console's own endpoints (/v1/console) and the Schema Registry (/subjects). Same
// origin, so the browser sends the credentials it was given (Basic) with every call.

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export async function getJSON<T>(path: string): Promise<T> {
  const response = await fetch(path, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  const text = await response.text();
  let document: unknown = null;
  try {
    document = text ? JSON.parse(text) : null;
  } catch {
    throw new ApiError(response.status, `${response.status}: ${text.slice(0, 200)}`);
  }
  if (!response.ok) {
    const body = document as { message?: string } | null;
    throw new ApiError(response.status, body?.message ?? `${response.status} ${response.statusText}`);
  }
  return document as T;
}

export const segment = encodeURIComponent;

export interface TopicRow {
  name: string;
  records: number;
  bytes: number;
  keys: number;
  first_offset: number;
  next_offset: number;
  segments: number;
  cleanup: string;
  schema: string | null;
  status: string;
  created_at: number;
  records_per_second: number | null;
  bytes_per_second: number | null;
}

export interface TopicListing {
  topics: TopicRow[];
  truncated: boolean;
  topics_max: number;
  rate_window_seconds: number | null;
}

// A record as the HTTP API gives it: bytes as text, or base64 under a `_b64` name.
export interface ApiRecord {
  topic?: string;
  offset: number;
  timestamp: string;
  key?: string | null;
  key_b64?: string;
  value?: unknown;
  value_b64?: string;
  headers?: Record<string, string>;
  headers_b64?: Record<string, string>;
  version: number | null;
}

export interface KeyRecords {
  topic: string;
  version: number;
  records: ApiRecord[];
  next_version: number | null;
}

export interface TopicLag {
  topic: string;
  committed: number;
  read: number;
  next_offset: number;
  lag: number;
  in_flight: number;
  waiting: number;
  partitions?: { partition: number; committed: number; lag: number }[];
}

// The virtual partitions of one topic a Kafka group's member holds; `lag` sums those
// with a committed offset, `uncommitted` lists the others (their lag is not known).
export interface AssignedPartitions {
  topic: string;
  partitions: number[];
  lag: number;
  uncommitted: number[];
}

export interface MemberInfo {
  member: string;
  joined_at: number;
  idle_seconds: number;
  in_flight: number;
  active: boolean;
  client_id?: string | null;
  client_host?: string | null;
  // The lag of what the member holds: absent when it holds nothing of its own (an
  // odradek group with ordering "key" or "none" assigns nothing).
  lag?: number;
  assignment?: AssignedPartitions[];
}

export interface GroupInfo {
  group: string;
  kind: string;
  state: string;
  pattern: string | null;
  members: MemberInfo[];
  topics: TopicLag[];
  counters: Record<string, number>;
}

export interface GroupListing {
  groups: { group: string; kind: string; state: string; members: number }[];
}

export interface SubjectVersion {
  subject: string;
  version: number;
  id: number;
  schemaType?: string;
  schema: string;
}

export interface ClusterAnswer {
  clustered: boolean;
  status?: Record<string, unknown>;
}

export function keyText(record: ApiRecord): string {
  if (record.key_b64 !== undefined) return `base64:${record.key_b64}`;
  return record.key ?? "";
}

export function valueText(record: ApiRecord): string {
  if (record.value_b64 !== undefined) return `base64:${record.value_b64}`;
  if (typeof record.value === "string") return record.value;
  return JSON.stringify(record.value);
}

export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

export function formatRate(rate: number | null, bytes = false): string {
  if (rate === null) return "–";
  if (bytes) return `${formatBytes(Math.round(rate))}/s`;
  return `${rate < 10 ? rate.toFixed(1) : Math.round(rate).toLocaleString("en")}/s`;
}
