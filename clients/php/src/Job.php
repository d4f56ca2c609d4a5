<?php

declare(strict_types=1);

namespace Stoker;

/**
 * A job's states, and the questions about a job (an array as the API returns it) that every
 * caller asks. Jobs themselves stay plain arrays: `$job['id']`, `$job['state']` …
 */
final class Job
{
    public const QUEUED = 'queued';
    public const RUNNING = 'running';
    public const SUCCEEDED = 'succeeded';
    public const FAILED = 'failed';
    public const CANCELLED = 'cancelled';

    /** The states a job does not leave (unless retried by hand). */
    public const FINISHED = [self::SUCCEEDED, self::FAILED, self::CANCELLED];

    private function __construct()
    {
    }

    /** Has the job ended: succeeded, failed or cancelled? */
    public static function isFinished(array $job): bool
    {
        return in_array($job['state'] ?? null, self::FINISHED, true);
    }

    /** Did it end well? */
    public static function succeeded(array $job): bool
    {
        return ($job['state'] ?? null) === self::SUCCEEDED;
    }
}
