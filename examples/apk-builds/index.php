<?php
// A small page that submits a build and polls its status with fetch():
//
//   php -S 127.0.0.1:8000 examples/apk-builds/index.php      then open http://127.0.0.1:8000
//
// The browser talks to this page only; the page talks to stoker. So the browser can start
// build_apk and read a build's status, nothing else, and a token never leaves the server.
require __DIR__ . '/builds.php';

use Stoker\Job;
use Stoker\StokerException;

$action = $_GET['action'] ?? '';
if ($action !== '') {
    header('Content-Type: application/json');
    try {
        if ($action === 'submit' && $_SERVER['REQUEST_METHOD'] === 'POST') {
            $job = submit_build(stoker(), (string)($_POST['package'] ?? ''));
        } elseif ($action === 'status') {
            $job = stoker()->job((int)($_GET['id'] ?? 0));
        } else {
            http_response_code(404);
            echo json_encode(['problem' => 'unknown action']);
            exit;
        }
        $keep = ['id', 'state', 'attempt', 'max_attempts', 'error', 'output', 'started_at', 'finished_at'];
        $job = array_intersect_key($job, array_flip($keep));
        $job['finished'] = Job::isFinished($job);
        echo json_encode($job);
    } catch (StokerException $e) {
        // the daemon's refusal (422 for a bad package, 404 …), or 502: it could not be reached
        http_response_code($e->getStatus() >= 400 ? $e->getStatus() : 502);
        echo json_encode(['problem' => $e->getMessage()]);
    }
    exit;
}
?>
<!doctype html>
<meta charset="utf-8">
<title>APK builds</title>
<style>body { font: 16px sans-serif; margin: 2em; } pre { background: #f4f4f4; padding: 1em; }</style>
<h1>APK builds</h1>
<form>
  <input name="package" value="com.example.shop" size="30" required>
  <button>Build</button>
</form>
<pre id="out">Submit a package; com.example.broken fails.</pre>
<script>
const form = document.querySelector('form'), out = document.querySelector('#out');
const call = async (url, options) => (await fetch(url, options)).json();
form.onsubmit = async (event) => {
  event.preventDefault();
  let job = await call('?action=submit', {method: 'POST', body: new FormData(form)});
  while (job.id && !job.finished) {
    out.textContent = `job ${job.id}: ${job.state}\n\n${job.output || ''}`;
    await new Promise((resolve) => setTimeout(resolve, 500));
    job = await call(`?action=status&id=${job.id}`);
  }
  out.textContent = job.problem || `job ${job.id}: ${job.state} ${job.error || ''}\n\n${job.output || ''}`;
};
</script>
