// Addresses inside the console: #/conversations, #/conversations/<id>, #/actions, #/knowledge,
// #/metrics, #/api. Going to one changes the hash; router.js follows the change.

export function navigate(hash) {
  // The same address again: route anew, as a change of address would.
  if (location.hash === hash) window.dispatchEvent(new HashChangeEvent('hashchange'));
  else location.hash = hash;
}

export function conversationHash(id) {
  return `#/conversations/${encodeURIComponent(id)}`;
}
