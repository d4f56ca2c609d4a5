<?php

declare(strict_types=1);

namespace Stoker;

/**
 * The daemon refused a request, or could not be reached.
 *
 * A refusal carries what the API said: `{"error": {"code", "message", "param"?, "index"?}}`,
 * with its HTTP status (also the exception's getCode()). When no answer came, the status is 0
 * and the code says why: `not_running` (nothing listens on the socket or port), `unreachable`
 * (any other failure to connect or talk), `timeout` (no answer in time), `bad_answer` (not
 * the HTTP and JSON the API speaks), `target` (the target given to the Client makes no sense),
 * `encode` (the request's values cannot be JSON, e.g. a string that is not UTF-8).
 */
final class StokerException extends \RuntimeException
{
    public function __construct(
        string $message,
        private readonly int $status = 0,
        private readonly string $errorCode = 'unreachable',
        private readonly ?string $param = null,
        private readonly ?int $index = null,
        ?\Throwable $previous = null,
    ) {
        parent::__construct($message, $status, $previous);
    }

    /** The HTTP status of the refusal (422, 404, 409, 401 …); 0 when no answer came. */
    public function getStatus(): int
    {
        return $this->status;
    }

    /** The API's error code (`invalid_params`, `unknown_task`, `not_found` …), or one of the
     *  client's own when no answer came (`not_running`, `unreachable`, `timeout` …). */
    public function getErrorCode(): string
    {
        return $this->errorCode;
    }

    /** The parameter the refusal names (a task's parameter, e.g. `package`), if any. */
    public function getParam(): ?string
    {
        return $this->param;
    }

    /** The item of an enqueueMany() batch at fault (0-based), if any. */
    public function getIndex(): ?int
    {
        return $this->index;
    }

    /** True when the daemon is not running: nothing listens where the target points. */
    public function isNotRunning(): bool
    {
        return $this->errorCode === 'not_running';
    }
}
