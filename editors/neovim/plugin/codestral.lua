-- :Codestral {request|accept|accept_word|accept_line|next|prev|dismiss|status}. Nothing starts until
-- require("codestral").setup() is called.
if vim.g.loaded_codestral then
  return
end
vim.g.loaded_codestral = true

local actions = { "request", "accept", "accept_word", "accept_line", "next", "prev", "dismiss", "status" }

vim.api.nvim_create_user_command("Codestral", function(args)
  local action = args.fargs[1] or "status"
  if not vim.tbl_contains(actions, action) then
    return vim.notify("codestral: unknown action " .. action, vim.log.levels.ERROR)
  end
  if action == "status" then
    local s = require("codestral").status()
    if not s then
      return vim.notify("codestral: no server running")
    end
    local from = type(s.lastBackend) == "string" and (" (last suggestion from %s)"):format(s.lastBackend) or ""
    return vim.notify(("codestral: %s %s%s"):format(s.state, s.message or "", from))
  end
  require("codestral")[action]()
end, {
  nargs = "?",
  desc = "codestral: act on the inline suggestion",
  complete = function(lead)
    return vim.tbl_filter(function(a)
      return vim.startswith(a, lead)
    end, actions)
  end,
})
