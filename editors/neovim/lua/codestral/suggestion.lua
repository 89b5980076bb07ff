---@brief Asking for suggestions, showing one, cycling, accepting and dismissing it.
---
--- One suggestion at a time, in the current window. A request and the suggestion it brings are tied
--- to an anchor: the window, buffer, changedtick, cursor and line when it was asked for. An answer is
--- shown only if it is the latest request's and the anchor still holds; a change of text or cursor
--- away from the anchor dismisses it, except typing the suggestion's own next characters.

local api = vim.api
local client_mod = require("codestral.client")
local ghost = require("codestral.ghost")

local M = {}

---@class codestral.Anchor
---@field win integer
---@field bufnr integer
---@field tick integer changedtick
---@field row integer 0-based
---@field col integer byte
---@field line string the cursor line

---@class codestral.State
---@field seq integer number of the latest request; answers to earlier ones are dropped
---@field pending? { client: vim.lsp.Client, id: integer } the request in flight
---@field anchor? codestral.Anchor where the request was made and the suggestion holds
---@field items codestral.Suggestion[] the suggestions, all starting at the anchor
---@field index integer the one shown
---@field timer? uv.uv_timer_t debounce timer
local state = { seq = 0, items = {}, index = 1 }

---@type codestral.Config
M.config = require("codestral.config").defaults

local TRIGGER_INVOKED, TRIGGER_AUTOMATIC = 1, 2

---@return codestral.Anchor
local function anchor_here()
  local win = api.nvim_get_current_win()
  local bufnr = api.nvim_win_get_buf(win)
  local pos = api.nvim_win_get_cursor(win)
  return {
    win = win,
    bufnr = bufnr,
    tick = api.nvim_buf_get_changedtick(bufnr),
    row = pos[1] - 1,
    col = pos[2],
    line = api.nvim_get_current_line(),
  }
end

---@param a codestral.Anchor
---@param b codestral.Anchor
local function same_place(a, b)
  return a.win == b.win and a.bufnr == b.bufnr and a.tick == b.tick and a.row == b.row and a.col == b.col
end

local function cancel_pending()
  local p = state.pending
  state.pending = nil
  if p and not client_mod.call(p.client, "is_stopped") then
    client_mod.call(p.client, "cancel_request", p.id)
  end
end

---@return boolean
function M.is_visible()
  return #state.items > 0
end

--- Hides the suggestion and forgets it; cancels a request in flight and a pending automatic one.
function M.dismiss()
  if state.timer then
    state.timer:stop()
  end
  cancel_pending()
  state.seq = state.seq + 1
  if state.anchor then
    ghost.clear(state.anchor.bufnr)
  end
  state.anchor, state.items, state.index = nil, {}, 1
end

--- Shows `items` (starting at the cursor) and moves the anchor to where they start now.
---@param items codestral.Suggestion[]
---@param index? integer
local function show(items, index)
  state.items, state.index = items, index or 1
  state.anchor = anchor_here()
  ghost.show(state.anchor.bufnr, items[state.index])
end

--- Converts an inlineCompletion result into suggestions at `cursor` (0-based row, byte col), dropping
--- duplicates and items that would change nothing.
---@param bufnr integer
---@param result lsp.InlineCompletionList|lsp.InlineCompletionItem[]|nil
---@param cursor integer[]
---@param encoding string
---@return codestral.Suggestion[]
function M.suggestions(bufnr, result, cursor, encoding)
  local items = result and (result.items or result) or {}
  local out, seen = {}, {}
  for _, item in ipairs(items) do
    local s = ghost.from_item(bufnr, item, cursor, encoding)
    local key = s and table.concat({ s.text, s.end_row, s.end_col }, "\0")
    if s and not seen[key] then
      seen[key] = true
      out[#out + 1] = s
    end
  end
  return out
end

--- Asks the server for a suggestion at the cursor of the current window.
---@param trigger? integer 1 (Invoked, the default) or 2 (Automatic)
function M.request(trigger)
  trigger = trigger or TRIGGER_INVOKED
  M.dismiss()
  local anchor = anchor_here()
  local client = client_mod.get(anchor.bufnr)
  if not (client and client.initialized) then
    if trigger == TRIGGER_INVOKED then
      vim.notify("codestral: no server attached to this buffer", vim.log.levels.WARN)
    end
    return
  end
  state.anchor = anchor
  local seq = state.seq
  -- Not vim.lsp.util.make_position_params: Neovim 0.10's counts a character past a surrogate pair in UTF-16.
  local params = {
    textDocument = { uri = vim.uri_from_bufnr(anchor.bufnr) },
    position = { line = anchor.row, character = ghost.char_col(anchor.line, anchor.col, client.offset_encoding) },
    context = { triggerKind = trigger },
  }
  local function on_result(err, result)
    if seq ~= state.seq then
      return
    end
    state.pending = nil
    if err then
      if trigger == TRIGGER_INVOKED and err.code ~= -32800 and err.code ~= -32802 then
        vim.notify("codestral: " .. tostring(err.message), vim.log.levels.WARN)
      end
      return
    end
    if not same_place(anchor, anchor_here()) then
      return
    end
    local items = M.suggestions(anchor.bufnr, result, { anchor.row, anchor.col }, client.offset_encoding)
    if #items > 0 then
      show(items)
    end
  end
  local ok, id = client_mod.call(client, "request", "textDocument/inlineCompletion", params, on_result, anchor.bufnr)
  if ok and id and seq == state.seq then
    state.pending = { client = client, id = id }
  end
end

--- The server finished loading the model: in insert mode, with auto_trigger, ask for the suggestion
--- that the typing during the load could not get.
---@param client_id integer
function M.on_ready(client_id)
  if not (M.config and M.config.auto_trigger) or api.nvim_get_mode().mode:sub(1, 1) ~= "i" then
    return
  end
  local client = client_mod.get(api.nvim_get_current_buf())
  if client and client.id == client_id then
    M.request(TRIGGER_AUTOMATIC)
  end
end

--- Requests a suggestion once the user has paused typing for `debounce_ms`.
function M.schedule()
  state.timer = state.timer or assert(vim.uv.new_timer())
  state.timer:start(
    M.config.debounce_ms,
    0,
    vim.schedule_wrap(function()
      if api.nvim_get_mode().mode:sub(1, 1) == "i" then
        M.request(TRIGGER_AUTOMATIC)
      end
    end)
  )
end

--- Inserts the first `n` bytes of the suggestion (all of it: replaces its range); the rest stays shown.
---@param n integer
local function accept_bytes(n)
  local s, anchor = state.items[state.index], state.anchor
  if not (s and anchor and api.nvim_win_is_valid(anchor.win)) then
    return M.dismiss()
  end
  ghost.clear(anchor.bufnr)
  local rest = ghost.insert(anchor.win, anchor.bufnr, s, n)
  if rest then
    return show({ rest })
  end
  M.dismiss()
  local client = client_mod.get(anchor.bufnr)
  if s.command and client then
    client_mod.call(client, "request", "workspace/executeCommand", s.command, function() end, anchor.bufnr)
  end
end

--- Accepts the whole suggestion, replacing the range it covers.
function M.accept()
  local s = state.items[state.index]
  if s then
    accept_bytes(#s.text)
  end
end

--- Accepts the suggestion up to the end of its next word, with the blanks and line breaks before it.
function M.accept_word()
  local s = state.items[state.index]
  if s then
    local _, stop = s.text:find("^%s*[%w_\128-\255]+")
    accept_bytes(stop or select(2, s.text:find("^%s*[^%w_%s\128-\255]*")))
  end
end

--- Accepts the rest of the suggestion's current line (or, at its end, the next line).
function M.accept_line()
  local s = state.items[state.index]
  if s then
    local newline = s.text:find("\n", s.text:sub(1, 1) == "\n" and 2 or 1, true)
    accept_bytes(newline and newline - 1 or #s.text)
  end
end

---@param step integer
local function cycle(step)
  if not M.is_visible() then
    return M.request(TRIGGER_INVOKED)
  end
  state.index = (state.index - 1 + step) % #state.items + 1
  ghost.show(state.anchor.bufnr, state.items[state.index])
end

function M.next()
  cycle(1)
end

function M.prev()
  cycle(-1)
end

--- The suggestion shown, for statuslines and tests: its text, the buffer text it replaces, which
--- one of how many.
---@return { text: string, replaced: string, index: integer, count: integer }|nil
function M.current()
  local s = state.items[state.index]
  return s
    and { text = s.text, replaced = ghost.replaced(state.anchor.bufnr, s), index = state.index, count = #state.items }
end

--- The suggestions that remain when the user has typed their first characters: the line is the
--- anchor's line with `typed` inserted at the anchor, and the cursor right after it.
---@return codestral.Suggestion[]
local function typed_through()
  local a, now = state.anchor, anchor_here()
  if not a or now.win ~= a.win or now.bufnr ~= a.bufnr or now.row ~= a.row or now.col <= a.col then
    return {}
  end
  local typed = now.line:sub(a.col + 1, now.col)
  if now.line ~= a.line:sub(1, a.col) .. typed .. a.line:sub(a.col + 1) then
    return {}
  end
  local rest = {}
  for _, s in ipairs(state.items) do
    if #s.text > #typed and vim.startswith(s.text, typed) then
      local shift = s.end_row == s.row and #typed or 0
      rest[#rest + 1] =
        vim.tbl_extend("force", s, { text = s.text:sub(#typed + 1), col = now.col, end_col = s.end_col + shift })
    end
  end
  return rest
end

--- Text changed: keep what the user typed through, or dismiss and (in insert mode) ask again.
---@param args { buf: integer, event: string }
local function on_text_changed(args)
  local a = state.anchor
  if a and a.bufnr == args.buf and a.tick == api.nvim_buf_get_changedtick(args.buf) then
    return -- not changed since the anchor (our own partial accept moved it)
  end
  local rest = M.is_visible() and typed_through() or {}
  if #rest > 0 then
    return show(rest)
  end
  M.dismiss()
  if args.event == "TextChangedI" and M.config.auto_trigger then
    M.schedule()
  end
end

--- Cursor moved without a change of text (a change is on_text_changed's to judge): dismiss.
local function on_cursor_moved()
  local a = state.anchor
  if a and a.tick == api.nvim_buf_get_changedtick(a.bufnr) and not same_place(a, anchor_here()) then
    M.dismiss()
  end
end

--- Sets the autocommands that trigger and dismiss suggestions.
---@param config codestral.Config
function M.setup(config)
  M.config = config
  M.dismiss()
  local group = api.nvim_create_augroup("codestral.suggestion", { clear = true })
  local function on(events, callback)
    api.nvim_create_autocmd(events, { group = group, callback = callback })
  end
  on({ "TextChangedI", "TextChanged", "TextChangedP" }, on_text_changed)
  on({ "CursorMoved", "CursorMovedI" }, on_cursor_moved)
  on({ "InsertLeave", "BufLeave", "WinLeave" }, M.dismiss)
  on("InsertEnter", function()
    if M.config.auto_trigger then
      M.schedule()
    end
  end)
end

return M
