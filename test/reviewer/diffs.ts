/** A unified diff that adds `addedLines` lines to `path`: the reviewer tests' input. */
export function fileDiff(path: string, addedLines: number): string {
  const body = Array.from({ length: addedLines }, (_, i) => `+line ${i} of ${path}`).join('\n');
  return `diff --git a/${path} b/${path}\n--- a/${path}\n+++ b/${path}\n@@ -0,0 +1,${addedLines} @@\n${body}\n`;
}
