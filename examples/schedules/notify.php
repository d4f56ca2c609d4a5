<?php
// Notifies a channel about the gray release. Whether the release is on is the schedule's
// business (when_file in stoker.toml): this script only sends.
$channel = $argv[1] ?? 'android';
@mkdir(__DIR__ . '/sent');
file_put_contents(__DIR__ . "/sent/$channel.log", date(DATE_ATOM) . " gray release notice\n", FILE_APPEND);
echo "notified $channel\n";
