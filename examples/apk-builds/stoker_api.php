<?php
// The few lines of PHP that talk to stoker's HTTP API: php-cli with no extension beyond the
// defaults (file_get_contents and a stream context; allow_url_fopen is on by default).
//
// The address is [daemon] listen in the stoker.toml beside this file, unless STOKER_URL is set
// (e.g. http://10.0.0.5:9190). The Bearer token is STOKER_TOKEN, else the one the daemon made
// in .stoker/token beside this file (stoker.toml sets no [daemon] token).

class StokerError extends RuntimeException
{
}

function stoker_url(): string
{
    $url = getenv('STOKER_URL');
    if ($url) {
        return rtrim($url, '/');
    }
    $toml = (string)@file_get_contents(__DIR__ . '/stoker.toml');
    if (!preg_match('/^\s*listen\s*=\s*"([^"]+)"/m', $toml, $m)) {
        throw new StokerError('no [daemon] listen in ' . __DIR__ . '/stoker.toml; set STOKER_URL');
    }
    return "http://{$m[1]}";
}

function stoker_token(): string
{
    return getenv('STOKER_TOKEN') ?: trim((string)@file_get_contents(__DIR__ . '/.stoker/token'));
}

/** One API call: returns [HTTP status, decoded JSON]; throws StokerError on a refusal. */
function stoker_request(string $method, string $path, ?array $body = null): array
{
    $headers = ['Accept: application/json'];
    if ($body !== null) {
        $headers[] = 'Content-Type: application/json';
    }
    if ($token = stoker_token()) {
        $headers[] = "Authorization: Bearer $token";
    }
    $context = stream_context_create(['http' => [
        'method' => $method,
        'header' => implode("\r\n", $headers),
        'content' => $body === null ? '' : json_encode($body),
        'ignore_errors' => true, // a 4xx answer is JSON we want to read, not a warning
        'timeout' => 10,
    ]]);
    $url = stoker_url() . $path;
    $raw = @file_get_contents($url, false, $context);
    if ($raw === false) {
        throw new StokerError("cannot reach stoker at $url: " . (error_get_last()['message'] ?? 'no answer'));
    }
    $head = function_exists('http_get_last_response_headers')
        ? http_get_last_response_headers() : $http_response_header;
    $status = (int)(explode(' ', $head[0] ?? '')[1] ?? 0);
    $data = json_decode($raw, true);
    if ($status >= 400 || !is_array($data)) {
        throw new StokerError($data['error']['message'] ?? "HTTP $status: " . substr($raw, 0, 200), $status);
    }
    return [$status, $data];
}

/** Queue a build of $package; a build of it that is still queued or running is returned instead. */
function submit_build(string $package): array
{
    try {
        return stoker_request('POST', '/api/v1/jobs', [
            'task' => 'build_apk',
            'params' => ['package' => $package],
            'key' => $package, // dedup: one live build per package (HTTP 200 instead of 201)
        ]);
    } catch (StokerError $e) {
        // stoker checks the package against the pattern in stoker.toml (the one place the
        // rule is written) and refuses it with 422 before anything is queued.
        if ($e->getCode() === 422) {
            throw new StokerError("not an Android package name: '$package' ({$e->getMessage()})", 422);
        }
        throw $e;
    }
}

function job_finished(array $job): bool
{
    return in_array($job['state'], ['succeeded', 'failed', 'cancelled'], true);
}
