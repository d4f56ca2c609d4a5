<?php
// Sends one mail: php send_mail.php TO SUBJECT   (the body, optional, comes in STOKER_JOB_PARAMS)
//
// "Sending" writes the mail into $OUTBOX/<job id>.eml, so you can look at what went out.
// Named after the job, a mail sent twice (jobs run at least once) is still one file.
//
// It fails on purpose, the way SMTP servers do, so that you can watch the retries:
//   - a recipient containing "flaky" is greylisted on attempts 1 and 2, accepted on attempt 3;
//   - a recipient starting with "bounce@" is always refused.
// A failure is an exit code other than 0 with the reason on stderr: stoker keeps both, retries
// the job after its backoff, and after max_attempts leaves it failed for a person to look at.

if ($argc !== 3) {
    fwrite(STDERR, "usage: php send_mail.php TO SUBJECT\n");
    exit(2);
}
[, $to, $subject] = $argv;
$params = json_decode(getenv('STOKER_JOB_PARAMS') ?: '{}', true) ?: [];
$body = (string)($params['body'] ?? "Hello,\n\nthis mail was sent by stoker's mail-spool example.\n");
$job = getenv('STOKER_JOB_ID') ?: 'manual-' . getmypid();
$attempt = (int)(getenv('STOKER_JOB_ATTEMPT') ?: 1);
$host = getenv('SMTP_HOST') ?: 'smtp.example.com';
$outbox = getenv('OUTBOX') ?: 'outbox';

if (!filter_var($to, FILTER_VALIDATE_EMAIL)) {
    fwrite(STDERR, "SMTP 501 5.1.3 bad recipient address syntax: $to\n");
    exit(1);
}

echo "job $job attempt $attempt: connecting to $host for <$to>\n";

if (str_starts_with($to, 'bounce@')) {
    fwrite(STDERR, "SMTP 451 4.2.2 temporary failure: mailbox <$to> is over quota\n");
    exit(75); // EX_TEMPFAIL
}
if (str_contains($to, 'flaky') && $attempt < 3) {
    fwrite(STDERR, "SMTP 451 4.7.1 temporary failure: greylisted, try again later\n");
    exit(75);
}

@mkdir($outbox, 0777, true);
$id = bin2hex(random_bytes(6));
$mail = "Message-ID: <$id@stoker.example>\r\n"
    . "Date: " . date(DATE_RFC2822) . "\r\n"
    . "From: shop@example.com\r\n"
    . "To: $to\r\n"
    . "Subject: " . str_replace(["\r", "\n"], ' ', $subject) . "\r\n"
    . "\r\n"
    . str_replace("\n", "\r\n", $body);
// Write then rename: a reader never sees half a mail.
$tmp = "$outbox/.$job.eml.tmp";
if (file_put_contents($tmp, $mail) === false || !rename($tmp, "$outbox/$job.eml")) {
    fwrite(STDERR, "cannot write to the outbox $outbox\n");
    exit(1);
}
echo "SMTP 250 2.0.0 OK: queued as $id\n";
