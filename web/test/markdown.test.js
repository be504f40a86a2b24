// The widget's Markdown renderer (web/widget.js), run by `node --test web/test/` without a
// browser: widget.js hands node its renderer and starts no widget. What it returns goes into
// innerHTML, so every case checks both what is rendered and what must stay text.

'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');

const { renderMarkdown } = require(path.join(__dirname, '..', 'widget.js'));

const link = (href, label) => `<a href="${href}" target="_blank" rel="noopener noreferrer">${label}</a>`;

test('plain text is a paragraph; single line breaks are kept', () => {
  assert.equal(renderMarkdown('Здравствуйте!'), '<p>Здравствуйте!</p>');
  assert.equal(renderMarkdown('one\ntwo\r\nthree'), '<p>one<br>two<br>three</p>');
  assert.equal(renderMarkdown('one\n\ntwo'), '<p>one</p><p>two</p>');
  assert.equal(renderMarkdown(''), '');
});

test('HTML in the text is shown as text', () => {
  assert.equal(
    renderMarkdown('<img src=x onerror="alert(1)"><script>alert(2)</script>'),
    '<p>&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&lt;script&gt;alert(2)&lt;/script&gt;</p>',
  );
  assert.equal(renderMarkdown("Tom & Jerry's <b>"), '<p>Tom &amp; Jerry&#39;s &lt;b&gt;</p>');
  // The renderer's own stash markers cannot be forged from the text.
  assert.equal(renderMarkdown('a\u00000\u0000b `c`'), '<p>a0b <code>c</code></p>');
});

test('links are http(s) only, open in a new tab, and keep their label', () => {
  assert.equal(renderMarkdown('[Справка](https://example.com/kb/pay)'), `<p>${link('https://example.com/kb/pay', 'Справка')}</p>`);
  assert.equal(renderMarkdown('[wiki](https://en.wikipedia.org/wiki/Rust_(language))'),
    `<p>${link('https://en.wikipedia.org/wiki/Rust_(language)', 'wiki')}</p>`);
  assert.equal(renderMarkdown('[relative](/kb/pay)'), '<p>relative</p>');
  assert.equal(renderMarkdown('[mail](mailto:a@example.com)'), '<p>mail</p>');
});

test('javascript: and other schemes never become links', () => {
  assert.equal(renderMarkdown('[click](javascript:alert(1))'), '<p>click</p>');
  assert.equal(renderMarkdown('[click](JavaScript:alert(document.cookie))'), '<p>click</p>');
  assert.equal(renderMarkdown('[x](data:text/html;base64,PHNjcmlwdD4=)'), '<p>x</p>');
  assert.equal(renderMarkdown('javascript:alert(1)'), '<p>javascript:alert(1)</p>');
  assert.equal(renderMarkdown('![x](javascript:alert(1))'), '<p>x</p>');
});

test('a quote in a URL cannot end the attribute', () => {
  const html = renderMarkdown('[x](https://example.com/"onmouseover="alert(1))');
  assert.equal(html, `<p>${link('https://example.com/&quot;onmouseover=&quot;alert(1)', 'x')}</p>`);
  assert.doesNotMatch(html, /href="[^"]*"[^>]*onmouseover/);
});

test('bare URLs are linked, without the punctuation that ends a sentence', () => {
  assert.equal(renderMarkdown('See https://example.com/a.'), `<p>See ${link('https://example.com/a', 'https://example.com/a')}.</p>`);
  assert.equal(renderMarkdown('(https://example.com/a_(b))'), `<p>(${link('https://example.com/a_(b)', 'https://example.com/a_(b)')})</p>`);
  assert.equal(renderMarkdown('https://example.com/<x>'), `<p>${link('https://example.com/', 'https://example.com/')}&lt;x&gt;</p>`);
});

test('images become links (no images are ever shown)', () => {
  assert.equal(renderMarkdown('![схема](https://example.com/a.png)'), `<p>${link('https://example.com/a.png', 'схема')}</p>`);
  assert.equal(renderMarkdown('![](https://example.com/a.png)'), `<p>${link('https://example.com/a.png', 'https://example.com/a.png')}</p>`);
  assert.doesNotMatch(renderMarkdown('![x](https://example.com/a.png)'), /<img/);
});

test('emphasis, strong and their nesting', () => {
  assert.equal(renderMarkdown('*a* and **b**'), '<p><em>a</em> and <strong>b</strong></p>');
  assert.equal(renderMarkdown('**bold *italic* text**'), '<p><strong>bold <em>italic</em> text</strong></p>');
  assert.equal(renderMarkdown('*italic **bold** text*'), '<p><em>italic <strong>bold</strong> text</em></p>');
  assert.equal(renderMarkdown('***both***'), '<p><em><strong>both</strong></em></p>');
  assert.equal(renderMarkdown('**a** **b**'), '<p><strong>a</strong> <strong>b</strong></p>');
  assert.equal(renderMarkdown('2*3*4 and a * b * c'), '<p>2*3*4 and a * b * c</p>');
  assert.equal(renderMarkdown('** not bold **'), '<p>** not bold **</p>');
});

test('emphasis tags always nest, whatever the asterisks', () => {
  for (const text of ['*a **b*, c* d**', '**a *b** c*', '***a* b**', '**a *b* c* d*', '*a**b**c*', '****', '* * *']) {
    const html = renderMarkdown(text);
    const open = [];
    for (const [, closing, tag] of html.matchAll(/<(\/?)(em|strong)>/g)) {
      if (closing) assert.equal(open.pop(), tag, `${text} → ${html}`);
      else open.push(tag);
    }
    assert.deepEqual(open, [], `${text} → ${html}`);
  }
});

test('links take emphasis in their label but none from their URL', () => {
  assert.equal(renderMarkdown('[**Оплата** подписки](https://example.com/kb/pay)'),
    `<p>${link('https://example.com/kb/pay', '<strong>Оплата</strong> подписки')}</p>`);
  assert.equal(renderMarkdown('https://example.com/*a*/b'), `<p>${link('https://example.com/*a*/b', 'https://example.com/*a*/b')}</p>`);
  assert.equal(renderMarkdown('[x](https://example.com/*a*)'), `<p>${link('https://example.com/*a*', 'x')}</p>`);
});

test('code spans keep their content literally', () => {
  assert.equal(renderMarkdown('run `cargo test`'), '<p>run <code>cargo test</code></p>');
  assert.equal(renderMarkdown('`*not em*` and `<b>`'), '<p><code>*not em*</code> and <code>&lt;b&gt;</code></p>');
  assert.equal(renderMarkdown('`https://example.com`'), '<p><code>https://example.com</code></p>');
  assert.equal(renderMarkdown('`[x](https://example.com)`'), '<p><code>[x](https://example.com)</code></p>');
});

test('a code span in a link label is rendered inside the link', () => {
  assert.equal(renderMarkdown('[`npm test`](https://example.com/t)'), `<p>${link('https://example.com/t', '<code>npm test</code>')}</p>`);
  assert.doesNotMatch(renderMarkdown('x [`a`](https://e.com) `b`'), /\u0000/);
});

test('a code span in a URL makes no link and leaves no marker behind', () => {
  const html = renderMarkdown('[a](https://example.com/`y`)');
  assert.doesNotMatch(html, /\u0000/);
  assert.match(html, /<code>y<\/code>/);
  assert.doesNotMatch(html, /href="[^"]*<code>/);
  assert.doesNotMatch(renderMarkdown('https://example.com`x`'), /\u0000/);
});

test('fenced code blocks keep their lines as they are', () => {
  assert.equal(renderMarkdown('Пример:\n```js\nconst a = *b*;\n  if (a < 2) [x](https://e.com)\n```\nГотово.'),
    '<p>Пример:</p><pre><code>const a = *b*;\n  if (a &lt; 2) [x](https://e.com)</code></pre><p>Готово.</p>');
  assert.equal(renderMarkdown('```\n\n# not a heading\n- not a list\n```'), '<pre><code>\n# not a heading\n- not a list</code></pre>');
  // While an answer streams in, its block is not closed yet.
  assert.equal(renderMarkdown('```\nfn main() {'), '<pre><code>fn main() {</code></pre>');
  assert.equal(renderMarkdown('```\n<script>alert(1)</script>\n```'), '<pre><code>&lt;script&gt;alert(1)&lt;/script&gt;</code></pre>');
});

test('lists: bullets, numbers with their start, continued items', () => {
  assert.equal(renderMarkdown('- one\n- two'), '<ul><li>one</li><li>two</li></ul>');
  assert.equal(renderMarkdown('* one\n* **two**'), '<ul><li>one</li><li><strong>two</strong></li></ul>');
  assert.equal(renderMarkdown('1. one\n2. two'), '<ol><li>one</li><li>two</li></ol>');
  assert.equal(renderMarkdown('3) three\n4) four'), '<ol start="3"><li>three</li><li>four</li></ol>');
  assert.equal(renderMarkdown('- one\n  still one\n- two'), '<ul><li>one still one</li><li>two</li></ul>');
  assert.equal(renderMarkdown('Шаги:\n1. войти\n2. открыть\nДальше'), '<p>Шаги:</p><ol><li>войти</li><li>открыть</li></ol><p>Дальше</p>');
  assert.equal(renderMarkdown('- a\n1. b'), '<ul><li>a</li></ul><ol><li>b</li></ol>');
  assert.equal(renderMarkdown('- [x](javascript:alert(1)) <i>'), '<ul><li>x &lt;i&gt;</li></ul>');
});

test('headings become strong paragraphs', () => {
  assert.equal(renderMarkdown('# Оплата'), '<p><strong>Оплата</strong></p>');
  assert.equal(renderMarkdown('### Шаг *1* ###'), '<p><strong>Шаг <em>1</em></strong></p>');
  assert.equal(renderMarkdown('#### four'), '<p>#### four</p>');
});
