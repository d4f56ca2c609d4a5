<?php

declare(strict_types=1);

namespace Stoker;

/**
 * A kept connection was closed under a request before a byte of its answer came: the daemon
 * closed it while idle (or restarted), so the request may be sent again on a new one.
 *
 * @internal
 */
final class StaleConnection extends \Exception
{
}
